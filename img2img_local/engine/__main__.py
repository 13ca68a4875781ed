"""`python -m img2img_local.engine [flags]`: the engine in the foreground until Ctrl-C or SIGTERM."""
import argparse

from . import add_engine_arguments, config_from_args, serve
from .faults import ConfigError


def main() -> None:
    parser = add_engine_arguments(argparse.ArgumentParser(prog="python -m img2img_local.engine",
                                                          description=__doc__))
    args = parser.parse_args()
    try:
        config = config_from_args(args)
    except ConfigError as err:
        parser.error(str(err))
    serve(args.host, args.port, config)


if __name__ == "__main__":
    main()
