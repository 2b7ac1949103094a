"""``python -m empcn`` runs the command-line interface (also under ``torchrun -m empcn``)."""

from empcn.cli import main

if __name__ == "__main__":
    main()
