"""Train or evaluate BLAPose models.

    python train.py -t length ...   bone-length model (Bi-GRU with -bi, causal GRU without)
    python train.py -t pose ...     VideoPose3D lifter
    python train.py -t mix ...      fine-tune the mix model (frozen length model + lifter directions)

Works under ``torchrun --nproc_per_node N train.py ...`` (DistributedDataParallel). See README.md.
"""
from __future__ import annotations

import sys
from typing import Sequence

from common.train.arguments import parse_args
from common.utils.distributed import launch
from common.utils.errors import cli


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.train_type == "length":
        from common.train import train_length as task
    elif args.train_type == "pose":
        from common.train import train_pose as task
    else:
        from common.train import train_mix as task
    launch(task.train, args)


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
