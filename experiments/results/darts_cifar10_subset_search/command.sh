cd /work/main && PYTHONPATH=. /work/venv311/bin/python -m unas_jax.main --config=configs/darts_cifar10.py:quick --workdir=/work/runs/darts_c10 \
  --config.data.name=npz --config.data.npz_path=/work/shared/data/cifar10_subset.npz --config.data.image_size=16 \
  --config.search.init_epochs=1 --config.search.w_lr=3e-3 --config.search.w_lr_min=3e-4 \
  --config.search.phi_lr=1e-2 --config.search.phi_lr_min=3e-3 --config.search.max_steps=1100 \
  --config.log_every=20 --config.checkpoint_every=100 --config.eval_every=120
