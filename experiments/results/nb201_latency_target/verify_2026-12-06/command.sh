# run from the repository root, PYTHONPATH=$PWD
# 2026-12-06 09:21 UTC
nice -n 10 python experiments/nb201_latency_target.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --latency_table=/work/runs/nb201_lat/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target/verify_2026-12-06 --workdirs=/work/runs/nb201v --penalties=lagrangian-mode-hinge-constrained_mode-0.9-4,hinge,lagrangian-mode-hinge-constrained_mode-0.9-0
