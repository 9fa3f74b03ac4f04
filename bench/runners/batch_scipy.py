"""scipy reference for the fitMany benchmark: the same curves fitted one by one
with curve_fit (method 'lm', analytic Jacobian) in a Python loop. Reads the
job as JSON on argv[1] (paths of raw float64 files and shapes), fits the first
`count` curves and prints one JSON line with fits per second and the results."""
import json
import sys
import time

import numpy as np
from scipy.optimize import curve_fit


def gauss2d(xy, a, u, v, s, c):
    x1, x2 = xy
    return a * np.exp(-((x1 - u) ** 2 + (x2 - v) ** 2) / (2 * s * s)) + c


def gauss2d_jac(xy, a, u, v, s, c):
    x1, x2 = xy
    e = np.exp(-((x1 - u) ** 2 + (x2 - v) ** 2) / (2 * s * s))
    return np.stack([e, a * e * (x1 - u) / (s * s), a * e * (x2 - v) / (s * s),
                     a * e * ((x1 - u) ** 2 + (x2 - v) ** 2) / (s ** 3), np.ones_like(e)], axis=1)


def gauss1d(x, a, u, s, c):
    return a * np.exp(-((x - u) ** 2) / (2 * s * s)) + c


def gauss1d_jac(x, a, u, s, c):
    e = np.exp(-((x - u) ** 2) / (2 * s * s))
    return np.stack([e, a * e * (x - u) / (s * s), a * e * (x - u) ** 2 / (s ** 3), np.ones_like(e)], axis=1)


def main():
    job = json.loads(sys.argv[1])
    m, n, p = job["m"], job["n"], job["p"]
    y = np.fromfile(job["yPath"], dtype="<f8").reshape(m, n)
    p0 = np.fromfile(job["p0Path"], dtype="<f8").reshape(m, p)
    xs = [np.fromfile(path, dtype="<f8") for path in job["xPaths"]]
    f, jac = (gauss2d, gauss2d_jac) if job["model"] == "gauss2d" else (gauss1d, gauss1d_jac)
    xdata = np.vstack(xs) if len(xs) > 1 else xs[0]
    count = min(job["count"], m)
    params = np.full((count, p), np.nan)
    started = time.perf_counter()
    for i in range(count):
        try:
            params[i], _ = curve_fit(f, xdata, y[i], p0=p0[i], jac=jac, method="lm")
        except Exception:
            pass
    elapsed = time.perf_counter() - started
    print(json.dumps({"count": count, "seconds": elapsed, "fitsPerSecond": count / elapsed,
                      "params": params.reshape(-1).tolist()[: 5 * p]}))


main()
