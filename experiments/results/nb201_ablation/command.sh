# run from the repository root, PYTHONPATH=$PWD
nice -n 10 python experiments/nb201_ablation.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --out=experiments/results/nb201_ablation --workdirs=/tmp/nb201_ablation
