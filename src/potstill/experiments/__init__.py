"""Many runs of one recipe: hyperparameter sweeps (`potstill sweep`). Seeds (`--seeds`) live in
cli/commands.py and report/seeds.py; architecture search in compress/."""
