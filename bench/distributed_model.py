"""distributed_model.py - the scaling model of bench/DISTRIBUTED.md: predicted speedup of
data-parallel training on N processes (nodes) from the compute per step and the bytes the
tree reduces, with latency and bandwidth terms.

    /usr/bin/python3 bench/distributed_model.py

Per step on N processes (L = ceil(log2 N) tree levels):
    T(N) = C (1 + o) / N  +  2 L (alpha + 4 P / beta)  +  2 L alpha
           compute         gradient: up the tree, back     the status agreement
                           down (P floats per message)     after the step
    S(N) = C / T(N)
C: compute of one step on one process (unblocked), o: the cost of blocks (measured ~0.1
for blocks of 64 rows of the MLP), P: parameters. The constants below are the measured
ones (bench/DISTRIBUTED.md) or labelled assumptions.
"""
import math

MODELS = {  # name: (parameters, compute seconds per step on one core, note)
    "MLP 256x3, batch 512": (133122, 0.0100, "CPU ms/step measured here (distributed.sh)"),
    "MLP 256x3, batch 2048": (133122, 0.0179, "1/55.9 steps/s, bench/RESULTS.md"),
    "U-Net 1.5M, 32x32, batch 64": (1525411, 1.44, "8 x 0.180 CPU s per 8 images, bench/IMAGES.md"),
}
LINKS = {  # name: (alpha seconds, beta bytes/second, how known)
    "loopback, measured (load 8)": (1.1e-6, 8.2e9, "fit to 1k and 64k floats, 2 processes"),
    "loopback, measured (load 14)": (2.5e-6, 3.7e9, "same fit, second run"),
    "10 GbE (assumed)": (50e-6, 1.1e9, "assumption, not measured"),
    "100 Gb/s InfiniBand (assumed)": (2e-6, 11e9, "assumption, not measured"),
}
OVERHEAD = 0.1
NS = (2, 4, 8, 16, 32)


def speedup(C, P, alpha, beta, N):
    L = math.ceil(math.log2(N))
    t = C * (1 + OVERHEAD) / N + 2 * L * (alpha + 4 * P / beta) + 2 * L * alpha
    return C / t, 2 * L * (alpha + 4 * P / beta) + 2 * L * alpha


def main():
    for lname, (alpha, beta, how) in LINKS.items():
        print("\n%s: alpha %.1f us, beta %.1f GB/s (%s)" % (lname, alpha * 1e6, beta / 1e9, how))
        print("| model | P | C ms | " + " | ".join("N=%d" % n for n in NS) + " |")
        print("|---|---|---|" + "---|" * len(NS))
        for mname, (P, C, _) in MODELS.items():
            cells = []
            for n in NS:
                s, r = speedup(C, P, alpha, beta, n)
                cells.append("%.1fx (%.2f ms)" % (s, r * 1e3))
            print("| %s | %d | %.1f | %s |" % (mname, P, C * 1e3, " | ".join(cells)))


if __name__ == "__main__":
    main()
