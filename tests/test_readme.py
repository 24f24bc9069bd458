"""The README's Python example runs as written."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_examples_run():
  text = (ROOT / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert blocks, "README has no python example"
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
  text = (ROOT / "README.md").read_text()
  test_command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", text, re.S).group(1).strip()
  assert test_command in (ROOT / ".ci" / "run").read_text()
