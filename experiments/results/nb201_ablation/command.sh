# run from the repository root, PYTHONPATH=$PWD
nice -n 10 python experiments/nb201_ablation.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --out=experiments/results/nb201_ablation --workdirs=/tmp/nb201_ablation
# completed 2026-11-30 17:38-17:56 UTC (the 9 remaining searches; rerun of the first command, one worker, nice -n 15)
