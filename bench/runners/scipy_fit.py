"""scipy.optimize.curve_fit in its own process, on the benchmark's data.

Usage: python3 scipy_fit.py '<job json>' where the job holds model, xPath,
yPath, n, p0 and method ('lm' or 'trf'). The analytic Jacobian is given and
the tolerances are curve_fit's defaults. Prints {"phase": "fit-start"} once
the data is loaded, then one JSON result line (see bench/runners/protocol.js).
The models mirror bench/trials.js, under the same ids.
"""
import json
import resource
import sys
import time

import numpy as np
from scipy.optimize import curve_fit


def exp3(x, a, b, c):
    return a * np.exp(-b * x) + c


def exp3_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], axis=1)


def dexp5(x, a1, b1, a2, b2, c):
    return a1 * np.exp(-b1 * x) + a2 * np.exp(-b2 * x) + c


def dexp5_jac(x, a1, b1, a2, b2, c):
    e1 = np.exp(-b1 * x)
    e2 = np.exp(-b2 * x)
    return np.stack([e1, -a1 * x * e1, e2, -a2 * x * e2, np.ones_like(x)], axis=1)


def gauss5(x, a, mu, s, c0, c1):
    return a * np.exp(-((x - mu) ** 2) / (2 * s * s)) + c0 + c1 * x


def gauss5_jac(x, a, mu, s, c0, c1):
    u = x - mu
    g = np.exp(-(u * u) / (2 * s * s))
    return np.stack([g, a * g * u / (s * s), a * g * u * u / (s * s * s), np.ones_like(x), x], axis=1)


def gauss10(x, *p):
    f = np.full_like(x, p[9])
    for k in range(0, 9, 3):
        f += p[k] * np.exp(-((x - p[k + 1]) ** 2) / (2 * p[k + 2] ** 2))
    return f


def gauss10_jac(x, *p):
    columns = []
    for k in range(0, 9, 3):
        a, s = p[k], p[k + 2]
        u = x - p[k + 1]
        g = np.exp(-(u * u) / (2 * s * s))
        columns += [g, a * g * u / (s * s), a * g * u * u / (s * s * s)]
    columns.append(np.ones_like(x))
    return np.stack(columns, axis=1)


MODELS = {
    'exp3': (exp3, exp3_jac),
    'dexp5': (dexp5, dexp5_jac),
    'gauss5': (gauss5, gauss5_jac),
    'gauss10': (gauss10, gauss10_jac),
}


def peak_rss_kib():
    """VmHWM from /proc: on Linux ru_maxrss survives fork and exec, so it would
    include what the parent held when it spawned this process."""
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def emit(record):
    print(json.dumps(record), flush=True)


def main():
    job = json.loads(sys.argv[1])
    started = None
    try:
        if job['model'] not in MODELS:
            raise ValueError(f"unknown model '{job['model']}' (known: {', '.join(MODELS)})")
        f, jac = MODELS[job['model']]
        x = np.fromfile(job['xPath'], dtype='<f8')
        y = np.fromfile(job['yPath'], dtype='<f8')
        if x.size != job['n'] or y.size != job['n']:
            raise ValueError(f"expected {job['n']} points, read {x.size} x and {y.size} y")
        emit({'phase': 'fit-start'})
        started = time.perf_counter()
        popt, _, info, message, _ = curve_fit(
            f, x, y, p0=job['p0'], jac=jac, method=job['method'], full_output=True)
        wall_ms = (time.perf_counter() - started) * 1000
        emit({
            'ok': True, 'timedOut': False, 'error': None,
            'wallMs': wall_ms,
            'passes': int(info['nfev']),
            'njev': int(info['njev']) if 'njev' in info else None,
            'params': [float(v) for v in popt],
            'message': str(message),
            'maxRssKiB': peak_rss_kib(),
        })
    except Exception as error:  # a failed fit is a result, not a crash
        emit({
            'ok': False, 'timedOut': False, 'error': f'{type(error).__name__}: {error}',
            'wallMs': None if started is None else (time.perf_counter() - started) * 1000,
            'maxRssKiB': peak_rss_kib(),
        })


if __name__ == '__main__':
    main()
