# run from the repository root with PYTHONPATH=$PWD. Two workers shared the list (claims in runs/*.claim):
nice -n 10 python experiments/nb201_ablation.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --out=experiments/results/nb201_ablation --workdirs=/tmp/nb201_ablation
nice -n 10 python experiments/nb201_ablation.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --out=experiments/results/nb201_ablation --workdirs=/tmp/nb201_ablation --reverse
# stopped at the deadline after 15 searches; table and plot rebuilt with:
python experiments/nb201_ablation.py --npz=/work/shared/data/cifar10_subset.npz --table=/work/shared/data/nb201_accuracy.csv --out=experiments/results/nb201_ablation --aggregate_only
