"""Data-parallel training with mpi4py over the library's seam (doc/distributed.md).

    mpirun -np 4 python3 mpi_train.py [--steps 20] [--batch 64] [--block 8] [--check]

Every process builds the same model and draws the same whole batch (the toy's draws are
keyed by step); it computes the partial gradient of its share of the blocks, and the
shares are summed along the library's tree (stochflow.grad_tree_split) with
point-to-point messages, never Allreduce (whose order is unspecified). The total goes
back down the same tree and every process applies it, so the weights are the same bits
as one process's train_step with the same grad_block, whatever the number of processes.
With --check, rank 0 also trains such a model alone and compares the bits.
"""
import argparse
import sys

import numpy as np
from mpi4py import MPI

import stochflow as sf

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def tree_combine(grad, loss, lo, hi):
    """Sum the (grad, loss) of ranks [lo, hi) into rank lo, along the tree."""
    if hi - lo < 2:
        return loss
    mid = sf.grad_tree_split(lo, hi)
    if rank < mid:
        loss = tree_combine(grad, loss, lo, mid)
        if rank == lo:
            theirs = np.empty_like(grad)
            comm.Recv(theirs, source=mid, tag=1)
            grad += theirs  # left + right, the tree's order
            loss += comm.recv(source=mid, tag=2)
    else:
        loss = tree_combine(grad, loss, mid, hi)
        if rank == mid:
            comm.Send(grad, dest=lo, tag=1)
            comm.send(loss, dest=lo, tag=2)
    return loss


def tree_broadcast(grad, loss, lo, hi):
    """Hand rank lo's total down the same tree."""
    if hi - lo < 2:
        return loss
    mid = sf.grad_tree_split(lo, hi)
    if rank == lo:
        comm.Send(grad, dest=mid, tag=3)
        comm.send(loss, dest=mid, tag=4)
    if rank == mid:
        comm.Recv(grad, source=lo, tag=3)
        loss = comm.recv(source=lo, tag=4)
    return tree_broadcast(grad, loss, lo, mid) if rank < mid else \
        tree_broadcast(grad, loss, mid, hi)


def step(m, x, block):
    """One data-parallel step on the whole batch x; returns the batch loss."""
    n = x.shape[0]
    row0, rows, active = sf.grad_share(n, block, rank, size)
    g = m.gradients()  # the model's own buffer: the partial sum lands here
    if rows:
        loss_sum = m.partial_gradient(x[row0:row0 + rows], row0, n)
    else:  # no share (more processes than blocks): contributes nothing
        loss_sum = 0.0
    # ranks past `active` hold nothing; the tree over [0, size) with them skipped is the
    # tree over [0, active), but simpler to keep them out of the reduction
    if rank < active:
        loss_sum = tree_combine(g, loss_sum, 0, active)
    loss_sum = tree_broadcast(g, loss_sum, 0, size)  # every process: the total in g
    loss = loss_sum / n
    m.record_loss(loss)
    m.apply_gradient()
    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    m = sf.Model(2, hidden=(32, 32), seed=0, grad_block=a.block)
    for s in range(a.steps):
        loss = step(m, sf.toy_sample("moons", a.batch, seed=1, stream=s), a.block)
    if rank == 0:
        print("%d processes, %d steps: loss %.5f" % (size, a.steps, loss))
    if a.check and rank == 0:
        ref = sf.Model(2, hidden=(32, 32), seed=0, grad_block=a.block)
        for s in range(a.steps):
            ref.train_step(sf.toy_sample("moons", a.batch, seed=1, stream=s))
        same = np.array_equal(ref.parameters().view(np.uint32), m.parameters().view(np.uint32))
        print("same bits as one process: %s" % same)
        if not same:
            comm.Abort(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
