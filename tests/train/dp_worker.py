"""One process of the 2-process data-parallel test (started by ``paddle.distributed.launch``).

Trains :class:`TinySegmenter` without BatchNorm through :class:`Trainer` wrapped in
``paddle.DataParallel`` (gloo on CPU), with this rank's share of each global batch, and saves its
parameters to ``OUT_DIR/rank<r>.npz``.

Usage: ``python -m paddle.distributed.launch --nproc_per_node 2 dp_worker.py OUT_DIR NUM_ITERS``
"""

import os
import sys

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from train_helpers import GLOBAL_BATCH, NUM_SAMPLES, parameters_of, tiny_loader, tiny_trainer  # noqa: E402


def main(out_dir, num_iters):
    paddle.set_device('cpu')
    paddle.distributed.init_parallel_env()
    rank, world_size = paddle.distributed.get_rank(), paddle.distributed.get_world_size()
    trainer = tiny_trainer(num_iters, batch_norm=False)  # wrapped in DataParallel by build_trainer
    trainer.train(tiny_loader(NUM_SAMPLES, GLOBAL_BATCH // world_size, rank, world_size))
    np.savez(os.path.join(out_dir, 'rank%d.npz' % rank), **parameters_of(trainer.model._layers))


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]))
