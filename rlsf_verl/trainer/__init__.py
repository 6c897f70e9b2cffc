"""rlsf-verl's v1 trainer: verl's synchronous PPO/GRPO trainer plus a group step before the advantage."""
