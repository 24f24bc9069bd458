"""unas_jax: UNAS (differentiable NAS meets RL) in JAX/Flax."""
from setuptools import find_packages, setup

# Floors, not pins: Python 3.11 resolves jax 0.10.x, Python 3.12 jax 0.12.x.
INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "chex>=0.1.90",
    "orbax-checkpoint>=0.11",
    "ml-collections>=1.0",
    "clu>=0.0.12",
    "tensorflow-datasets>=4.9",
    # tfds 4.9 needs it to prepare datasets but declares it only for Python < 3.9
    # (tensorflow/datasets#11212).
    "importlib_resources>=6.0",
    # tfds pipelines and clu's TensorBoard writer need TensorFlow; the CPU build
    # is enough (JAX owns the accelerator), as in big_vision.
    "tensorflow-cpu>=2.16; platform_system=='Linux' and platform_machine=='x86_64'",
    "tensorflow>=2.16; platform_system!='Linux' or platform_machine!='x86_64'",
    "tensorboard>=2.16",
    "numpy>=1.26",
    "scikit-learn>=1.3",  # ships the zero-download digits dataset
    "scipy>=1.11",  # Kendall tau of the latency surrogate (unas_jax/latency/surrogate.py)
    "matplotlib>=3.7",
    "pyyaml>=6.0",
    "tqdm>=4.60",
]

setup(
    name="unas_jax",
    version="0.1.0",
    description="UNAS neural architecture search (REBAR/RELAX estimators) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["unas_jax", "unas_jax.*"]),
    # Built-in latency tables (latency.lut_path="builtin:<name>", unas_jax/latency/tables.py).
    package_data={"unas_jax.latency": ["data/*.yaml", "data/README.md"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        # gs:// workdirs: orbax asks the bucket's metadata through google-cloud-storage when it
        # lists or deletes checkpoint steps; orbax itself does not require it.
        "gcs": ["google-cloud-storage"],
    },
)
