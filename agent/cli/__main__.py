"""``python -m agent.cli``: the ``scenewatch`` command."""

from agent.cli.app import main

main()
