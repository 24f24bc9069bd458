# run from the repository root, PYTHONPATH=$PWD
nice -n 10 python experiments/nb201_latency_target.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --latency_table=/work/runs/nb201_lat/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target --workdirs=/work/runs/nb201_latency_target
# 2026-11-30 20:44 UTC
nice -n 10 python experiments/nb201_latency_target.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --latency_table=/work/runs/nb201_lat/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target --workdirs=/work/runs/nb201_latency_target --penalties=lagrangian-mode
# 2026-11-30 21:05 UTC
nice -n 10 python experiments/nb201_latency_target.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --latency_table=/work/runs/nb201_lat/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target --workdirs=/work/runs/nb201_latency_target --penalties=lagrangian-expected-hinge,lagrangian-mode-hinge
# 2026-12-01 03:36 UTC
nice -n 10 python experiments/nb201_latency_target.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --latency_table=/work/runs/nb201_lat/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target --workdirs=/work/runs/nb201_latency_target --penalties=lagrangian-mode-hinge-constrained_mode
