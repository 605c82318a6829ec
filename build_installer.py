"""Build the CoMo Live installer (PyInstaller one-folder of the runtime: engine + app, no torch).

The installer is the subject of a later issue; this entry point exists so the layout is complete
and says so plainly instead of pretending to build something.
"""
import sys


def main() -> int:
    print("build_installer.py: the installer is not built yet (planned in a later issue). "
          "Run the app with ./scripts/app.sh.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
