"""The scipy parity suite: reference fits computed once, stored as JSON fixtures.

    python3 test/parity/generate.py

writes test/parity/fixtures/<problem>.json, one file per problem, which
test/parity/parity.test.ts reads. The tests never run Python; this script
documents how every number was made and can regenerate them bit for bit with
the same numpy and scipy (their versions are stored in every fixture).

Every problem has
  - data generated here with numpy's default_rng, seeded with (SEED, problem id),
    so adding or reordering problems never changes another problem's data;
  - the model twice: in nlfit's expression language (`model`) and as the numpy
    expression scipy evaluated (`model_numpy`). The script checks that both
    evaluate to the same values before fitting (nlfit's `^` is Python's `**`,
    its comparisons give 1 or 0, which numpy writes `(x > c).astype(float)`);
  - the options nlfit needs to pose the same problem (`options`: absoluteSigma,
    bounds { name: [lo, hi] } with null for an infinite side, loss, fScale) and
    `needs`, the nlfit features they require ([] plain, 'bounds', 'loss');
  - scipy's answer: the optimum `popt`, its `cost` in scipy's convention
    (0.5*sum(rho(r_i^2)) with rho scaled by f_scale as least_squares does;
    0.5*sum(r_i^2) for the linear loss, r_i = (y_i - f_i)/sigma_i), `active_mask`
    (scipy: -1 at the lower bound, 1 at the upper, 0 free), `pcov` where scipy
    gives a covariance (curve_fit), nfev and the exit status.

Solvers (all with the exact, complex-step Jacobian, see `jacobian`):
  - plain problems: scipy.optimize.curve_fit(method='lm', ftol=xtol=gtol=1e-15,
    maxfev=100000), which is MINPACK lmder, the algorithm nlfit implements; the
    same problem is also solved with least_squares(method='lm') with the same
    tolerances and both must agree. `popt`, `pcov` are curve_fit's;
  - bounded problems: least_squares(method='trf', bounds=..., ftol=xtol=gtol=1e-15);
    for the ones whose bounds are inactive also curve_fit(method='trf', bounds=...)
    for a covariance;
  - robust problems: least_squares(method='trf', loss=..., f_scale=...), same
    tolerances.

Tight tolerances are not enough by themselves, so before writing, every
reference is checked independently of the solver that made it:
  - linear loss, unbounded: Gauss-Newton from popt converges to the stationary
    point (gradient zero to 1e-11 of its scale); popt lies within 1e-6 standard
    errors of it and its sum of squares within 1e-13 relative; a restart from
    popt does not lower the cost; least_squares(method='lm') agrees;
  - bounded: with the parameters scipy reports active fixed at their bounds,
    Gauss-Newton over the free ones converges; the free gradient vanishes, the
    gradient on every active parameter points out of the box (a valid KKT
    multiplier), popt is within 1e-7 relative of the refined point and its
    cost not lower than scipy's by more than rounding; inactive problems have no
    parameter within 1e-3 relative of a bound;
  - robust: iteratively reweighted Gauss-Newton (weights rho') from popt, with
    any active parameter fixed at its bound, converges to a point where the
    gradient of the robust cost, J^T (rho'(z) r), vanishes to 1e-11 of its
    scale (and points out of the box on active parameters); popt is within
    1e-7 relative of it and its cost not lower;
  - every problem: a restart from popt does not lower the cost by more than
    1e-13 relative (the rounding noise of evaluating the cost: in badly_scaled
    each residual is ~1e-4 of the model value it is the difference of, and a
    restart lands 1.4e-14 lower with the parameters 5e-11 standard errors away).

JSON numbers are written with Python's float repr, which round-trips exactly.
"""

import json
import pathlib
import platform
import re
import sys

import numpy as np
import scipy
from scipy.optimize import curve_fit, least_squares, leastsq

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SEED = 20261122
TOL = 1e-15
MAX_NFEV = 100000

NUMPY_NAMES = {"np": np, "float": float}


# --- models ------------------------------------------------------------------


def evaluate_numpy(expr, params, names, p, columns):
    """The numpy model expression at parameters p (real or complex)."""
    scope = dict(NUMPY_NAMES)
    scope.update(columns)
    scope.update(zip(names, p))
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        return np.asarray(eval(expr, {"__builtins__": {}}, scope)) * np.ones(len(columns["y"]))


NLFIT_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "pi": np.pi,
}


def evaluate_nlfit(expr, names, p, columns):
    """nlfit's expression read as Python (only for the cross-check of the two forms).

    The expressions here use + - * / ^ ( ) numbers, names, the functions above and
    comparisons; `^` is right-associative and binds tighter than unary minus in
    both languages once written `**`, and a comparison of numpy arrays gives
    booleans, which multiply as 1 and 0, as nlfit's comparisons do.
    """
    assert re.fullmatch(r"[A-Za-z0-9_.+\-*/^()<>= ]+", expr), expr
    scope = dict(NLFIT_FUNCTIONS)
    scope.update(columns)
    scope.update(zip(names, p))
    return np.asarray(eval(expr.replace("^", "**"), {"__builtins__": {}}, scope), dtype=float) \
        * np.ones(len(columns["y"]))


class Problem:
    def __init__(self, spec, data):
        self.spec = spec
        self.names = spec["params"]
        self.expr = spec["model_numpy"]
        self.variables = spec["variables"]
        self.columns = {k: np.asarray(v, dtype=float) for k, v in data.items()}
        self.y = self.columns["y"]
        self.sigma = self.columns.get("sigma")
        self.w = np.ones_like(self.y) if self.sigma is None else 1.0 / self.sigma

    def model(self, p):
        return evaluate_numpy(self.expr, None, self.names, p, self.columns)

    def residual(self, p):
        """scipy's residual: (f - y)/sigma (the sign does not matter to any cost)."""
        return (self.model(p) - self.y) * self.w

    def jacobian(self, p):
        """Exact to rounding: complex-step derivatives, Im f(p + i h e_j) / h."""
        p = np.asarray(p, dtype=float)
        h = 1e-100
        cols = []
        for j in range(p.size):
            q = p.astype(complex)
            q[j] += 1j * h
            cols.append(np.imag(evaluate_numpy(self.expr, None, self.names, q, self.columns)) / h)
        return np.column_stack(cols) * self.w[:, None]

    # curve_fit's interface: f(xdata, *p), with xdata a dummy index
    def curve(self, _xdata, *p):
        return self.model(np.asarray(p))

    def curve_jac(self, _xdata, *p):
        return self.jacobian(np.asarray(p)) / self.w[:, None]


def loss_rho(loss, f_scale, r):
    """scipy's scaled loss: rho (cost = 0.5*sum(rho)) and its derivative in r^2."""
    if loss == "linear":
        return r**2, np.ones_like(r)
    z = (r / f_scale) ** 2
    if loss == "soft_l1":
        rho, d = 2 * (np.sqrt(1 + z) - 1), 1 / np.sqrt(1 + z)
    elif loss == "huber":
        rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
        d = np.where(z <= 1, 1.0, 1 / np.sqrt(np.maximum(z, 1)))
    elif loss == "cauchy":
        rho, d = np.log1p(z), 1 / (1 + z)
    elif loss == "arctan":
        rho, d = np.arctan(z), 1 / (1 + z**2)
    else:
        raise ValueError(loss)
    return f_scale**2 * rho, d


def cost_of(problem, p, loss="linear", f_scale=1.0):
    rho, _ = loss_rho(loss, f_scale, problem.residual(p))
    return float(0.5 * np.sum(rho))


# --- checks ------------------------------------------------------------------


def gauss_newton(problem, p, free):
    """Gauss-Newton over the free parameters from p, until the step is below rounding."""
    p = np.array(p, dtype=float)
    for _ in range(50):
        step = np.linalg.lstsq(problem.jacobian(p)[:, free], -problem.residual(p), rcond=None)[0]
        p[free] += step
        if np.all(np.abs(step) <= 1e-15 * np.abs(p[free])):
            break
    return p


def gradient_scale(jac, r):
    return np.linalg.norm(jac, axis=0) * np.linalg.norm(r)


def check_plain(problem, popt, perr):
    free = np.ones(popt.size, dtype=bool)
    p_star = gauss_newton(problem, popt, free)
    jw, r = problem.jacobian(p_star), problem.residual(p_star)
    g = jw.T @ r
    assert np.all(np.abs(g) <= 1e-11 * gradient_scale(jw, r)), (problem.spec["name"], g)
    if perr is not None:
        off = np.abs(popt - p_star) / perr
        assert np.all(off <= 1e-6), (problem.spec["name"], "standard errors from GN optimum", off)
    c_popt, c_star = cost_of(problem, popt), cost_of(problem, p_star)
    assert abs(c_popt - c_star) <= 1e-13 * c_star, (problem.spec["name"], c_popt, c_star)
    return p_star


def check_bounded(problem, popt, lb, ub, active_mask, expect_active):
    name = problem.spec["name"]
    active = active_mask != 0
    assert int(np.sum(active)) == expect_active, (name, active_mask)
    fixed = popt.copy()
    fixed[active_mask == -1] = lb[active_mask == -1]
    fixed[active_mask == 1] = ub[active_mask == 1]
    p_star = gauss_newton(problem, fixed, ~active)
    assert np.all(p_star >= lb) and np.all(p_star <= ub), (name, p_star)
    jw, r = problem.jacobian(p_star), problem.residual(p_star)
    g = jw.T @ r  # gradient of the cost
    scale = gradient_scale(jw, r)
    assert np.all(np.abs(g[~active]) <= 1e-11 * scale[~active]), (name, g)
    # KKT: at a lower bound the cost must rise inward (g > 0), at an upper bound g < 0.
    assert np.all(g[active_mask == -1] > 1e-6 * scale[active_mask == -1]), (name, g)
    assert np.all(g[active_mask == 1] < -1e-6 * scale[active_mask == 1]), (name, g)
    rel = np.abs(popt - p_star) / np.maximum(np.abs(p_star), 1e-300)
    assert np.all(rel <= 1e-7), (name, "popt vs refined", rel)
    c_popt, c_star = cost_of(problem, popt), cost_of(problem, p_star)
    assert c_star <= c_popt * (1 + 1e-13), (name, c_popt, c_star)
    if expect_active == 0:
        span = np.maximum(np.abs(popt), 1e-300)
        near = (np.abs(popt - lb) <= 1e-3 * span) | (np.abs(ub - popt) <= 1e-3 * span)
        assert not np.any(near), (name, "an inactive problem has a parameter near a bound", popt)
    return p_star


def robust_refine(problem, p, loss, f_scale, free):
    """Iteratively reweighted Gauss-Newton on the robust cost over the free
    parameters (weights rho'(z)), until the step is below rounding: the
    stationary point, independent of scipy's trust-region iteration."""
    p = np.array(p, dtype=float)
    for _ in range(200):
        r = problem.residual(p)
        _, d = loss_rho(loss, f_scale, r)
        sw = np.sqrt(d)
        step = np.linalg.lstsq(problem.jacobian(p)[:, free] * sw[:, None], -sw * r, rcond=None)[0]
        p[free] += step
        if np.all(np.abs(step) <= 1e-15 * np.abs(p[free])):
            break
    return p


def robust_gradient(problem, p, loss, f_scale):
    jw, r = problem.jacobian(p), problem.residual(p)
    _, d = loss_rho(loss, f_scale, r)
    return jw.T @ (d * r), np.linalg.norm(jw, axis=0) * np.linalg.norm(d * r)


def check_robust(problem, popt, loss, f_scale, active_mask, lb, ub):
    name = problem.spec["name"]
    free = active_mask == 0
    fixed = popt.copy()
    fixed[active_mask == -1] = lb[active_mask == -1]
    fixed[active_mask == 1] = ub[active_mask == 1]
    p_star = robust_refine(problem, fixed, loss, f_scale, free)
    assert np.all(p_star >= lb) and np.all(p_star <= ub), (name, p_star)
    g, scale = robust_gradient(problem, p_star, loss, f_scale)
    assert np.all(np.abs(g[free]) <= 1e-11 * scale[free]), (name, g / scale)
    assert np.all(g[active_mask == -1] > 1e-6 * scale[active_mask == -1]), (name, g)
    assert np.all(g[active_mask == 1] < -1e-6 * scale[active_mask == 1]), (name, g)
    g0, scale0 = robust_gradient(problem, popt, loss, f_scale)
    rel = np.abs(popt - p_star) / np.abs(p_star)
    assert np.all(rel <= 1e-7), (name, "popt vs refined", rel)
    c_popt, c_star = cost_of(problem, popt, loss, f_scale), cost_of(problem, p_star, loss, f_scale)
    assert c_star <= c_popt * (1 + 1e-13), (name, c_popt, c_star)
    return p_star, float(np.max(np.abs(g0[free]) / scale0[free])), float(np.max(rel))


def check_restart(problem, popt, cost, kw):
    again = least_squares(problem.residual, popt, jac=problem.jacobian, **kw)
    assert again.cost >= cost * (1 - 1e-13), (problem.spec["name"], again.cost, cost)


# --- references --------------------------------------------------------------


def floats(values):
    return None if values is None else np.asarray(values, dtype=np.float64).tolist()


def curve_fit_lm(problem, p0, absolute_sigma):
    """curve_fit(method='lm'); if MINPACK says the tolerances are too small to
    reach (info 6-8: converged to rounding), curve_fit raises, so the same call is
    made through leastsq, which curve_fit wraps, and pcov is formed the same way."""
    xdata = np.arange(problem.y.size, dtype=float)
    kw = dict(ftol=TOL, xtol=TOL, gtol=TOL, maxfev=MAX_NFEV)
    try:
        popt, pcov, info, msg, ier = curve_fit(
            problem.curve, xdata, problem.y, p0, sigma=problem.sigma,
            absolute_sigma=absolute_sigma, jac=problem.curve_jac, method="lm",
            full_output=True, **kw)
        via = "curve_fit"
    except RuntimeError:
        popt, cov_x, info, msg, ier = leastsq(
            problem.residual, p0, Dfun=problem.jacobian, full_output=True, **kw)
        pcov = cov_x if absolute_sigma else cov_x * (2 * cost_of(problem, popt)) / (
            problem.y.size - popt.size)
        via = "leastsq (curve_fit raises on MINPACK info 6-8)"
    return popt, pcov, int(info["nfev"]), int(info.get("njev", 0)), int(ier), msg, via


def tight(method):
    return dict(method=method, ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=MAX_NFEV)


def solve(spec, data):
    problem = Problem(spec, data)
    names = spec["params"]
    p0 = np.asarray(spec["p0"], dtype=float)
    n = p0.size
    options = spec["options"]
    loss = options.get("loss", "linear")
    f_scale = options.get("fScale", 1.0)
    bounds = options.get("bounds", {})
    lb = np.array([-np.inf if bounds.get(k, [None])[0] is None else bounds[k][0] for k in names])
    ub = np.array([np.inf if bounds.get(k, [None, None])[1] is None else bounds[k][1] for k in names])
    absolute = bool(options.get("absoluteSigma", False))

    # The two forms of the model agree (at p0 and at the truth).
    for p in (p0, np.asarray(spec["true_params"], dtype=float)):
        a = evaluate_numpy(spec["model_numpy"], None, names, p, problem.columns)
        b = evaluate_nlfit(spec["model"], names, p, problem.columns)
        assert np.allclose(a, b, rtol=1e-14, atol=0), (spec["name"], "model forms differ")
    # The complex-step Jacobian agrees with central differences.
    jw = problem.jacobian(p0)
    for j in range(n):
        h = 1e-6 * max(abs(p0[j]), 1e-3)
        e = np.zeros(n)
        e[j] = h
        fd = (problem.residual(p0 + e) - problem.residual(p0 - e)) / (2 * h)
        assert np.allclose(jw[:, j], fd, rtol=1e-5, atol=1e-7 * np.max(np.abs(fd))), (spec["name"], j)

    ref = {}
    if not bounds and loss == "linear":
        popt, pcov, nfev, njev, ier, msg, via = curve_fit_lm(problem, p0, absolute)
        unique = spec.get("unique", True)
        perr = np.sqrt(np.diag(pcov)) if unique else None
        ls = least_squares(problem.residual, p0, jac=problem.jacobian, **tight("lm"))
        cost = cost_of(problem, popt)
        p_star = check_plain(problem, popt, perr) if unique else None
        if unique:
            rel = np.abs(ls.x - popt) / np.abs(popt)
            assert np.all(rel <= 1e-8), (spec["name"], "least_squares lm vs curve_fit", rel)
        assert abs(ls.cost - cost) <= 1e-13 * cost, (spec["name"], ls.cost, cost)
        check_restart(problem, popt, cost, tight("lm"))
        ref.update(
            solver="curve_fit(method='lm') and least_squares(method='lm')",
            call=("curve_fit(f, x, y, p0, sigma=sigma, absolute_sigma=%s, jac=<exact>, "
                  "method='lm', ftol=1e-15, xtol=1e-15, gtol=1e-15, maxfev=%d)" % (absolute, MAX_NFEV)),
            via=via,
            popt=floats(popt),
            cost=cost,
            active_mask=[0] * n,
            pcov=floats(pcov) if unique else None,
            perr=floats(perr),
            nfev=nfev,
            njev=njev,
            status=ier,
            message=msg,
            popt_stationary=floats(p_star),
            least_squares_lm={
                "x": floats(ls.x), "cost": float(ls.cost), "nfev": int(ls.nfev),
                "njev": None if ls.njev is None else int(ls.njev),
                "status": int(ls.status), "message": ls.message,
            },
        )
        if not unique:
            ref["pcov_note"] = ("not stored: the optimum is not unique, so scipy's covariance "
                                "(from a numerically singular J^T J) is meaningless")
    else:
        kw = tight("trf")
        call = "least_squares(residual, p0, jac=<exact>, method='trf', ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=%d" % MAX_NFEV
        if bounds:
            kw["bounds"] = (lb, ub)
            call += ", bounds=(lb, ub)"
        if loss != "linear":
            kw["loss"] = loss
            kw["f_scale"] = f_scale
            call += ", loss=%r, f_scale=%r" % (loss, f_scale)
        call += ")"
        res = least_squares(problem.residual, p0, jac=problem.jacobian, **kw)
        assert res.success, (spec["name"], res.message)
        popt = res.x
        cost = cost_of(problem, popt, loss, f_scale)
        assert abs(cost - res.cost) <= 1e-13 * res.cost, (spec["name"], cost, res.cost)
        active_mask = np.asarray(res.active_mask, dtype=int)
        pcov = perr = p_star = None
        gradient = None
        if loss == "linear":
            p_star = check_bounded(problem, popt, lb, ub, active_mask, spec["expect_active"])
            if spec["expect_active"] == 0:
                popt_cf, pcov, info, _msg, _ier = curve_fit(
                    problem.curve, np.arange(problem.y.size, dtype=float), problem.y, p0,
                    sigma=problem.sigma, absolute_sigma=absolute, jac=problem.curve_jac,
                    bounds=(lb, ub), full_output=True, **tight("trf"))
                assert np.all(np.abs(popt_cf - popt) <= 1e-9 * np.abs(popt)), spec["name"]
                perr = np.sqrt(np.diag(pcov))
        else:
            assert int(np.sum(active_mask != 0)) == spec.get("expect_active", 0), (spec["name"], active_mask)
            p_star, gradient, rel = check_robust(problem, popt, loss, f_scale, active_mask, lb, ub)
        check_restart(problem, popt, cost, kw)
        ref.update(
            solver="least_squares(method='trf')",
            call=call,
            popt=floats(popt),
            cost=cost,
            active_mask=active_mask.tolist(),
            pcov=floats(pcov),
            perr=floats(perr),
            nfev=int(res.nfev),
            njev=None if res.njev is None else int(res.njev),
            status=int(res.status),
            message=res.message,
            optimality=float(res.optimality),
        )
        if pcov is not None:
            ref["pcov_from"] = ("curve_fit(..., bounds=(lb, ub), method='trf', same tolerances): "
                                "the bounds are inactive, so this is the unconstrained covariance")
        if p_star is not None:
            ref["popt_refined"] = floats(p_star)
            ref["cost_refined"] = cost_of(problem, p_star, loss, f_scale)
        if gradient is not None:
            ref["relative_gradient"] = gradient
            ref["max_relative_distance_to_refined"] = rel
    return ref


# --- problems ----------------------------------------------------------------


def outliers(rng, y, fraction, low, high):
    """Replace `fraction` of the points by gross outliers y +- U(low, high)."""
    y = y.copy()
    k = int(round(fraction * y.size))
    idx = np.sort(rng.choice(y.size, size=k, replace=False))
    signs = rng.choice([-1.0, 1.0], size=k)
    y[idx] += signs * rng.uniform(low, high, size=k)
    return y, idx


def problems():
    """(id, spec, data builder). The builder gets the problem's own generator."""
    out = []

    def add(pid, spec, build):
        out.append((pid, spec, build))

    def f(spec, columns, p):
        return evaluate_numpy(spec["model_numpy"], None, spec["params"], p,
                              {**columns, "y": np.zeros(len(next(iter(columns.values()))))})

    # ---------------- plain: unbounded, linear loss ----------------
    s = dict(name="exp_decay", needs=[], tests="3-parameter exponential decay, unweighted",
             model="a*exp(-b*x)+c", model_numpy="a*np.exp(-b*x)+c",
             params=["a", "b", "c"], true_params=[5.0, 0.7, 1.2], p0=[3.0, 0.3, 0.5],
             variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.0, 8.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.05 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(1, s, b)

    s = dict(name="exp_decay_sigma_relative", needs=[],
             tests="weighted (heteroscedastic sigma column), covariance scaled by the reduced chi-square",
             model="a*exp(-b*x)+c", model_numpy="a*np.exp(-b*x)+c",
             params=["a", "b", "c"], true_params=[4.0, 1.3, -0.5], p0=[2.0, 0.5, 0.0],
             variables=["x"], options={"absoluteSigma": False})

    def b(rng, s=s):
        x = np.linspace(0.0, 5.0, 200)
        sigma = 0.02 + 0.03 * x
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(2, s, b)

    s = dict(name="gaussian_sigma_absolute", needs=[],
             tests="weighted Gaussian peak with absoluteSigma: covariance as given by sigma",
             model="a*exp(-(x-mu)^2/(2*s^2))+c", model_numpy="a*np.exp(-(x-mu)**2/(2*s**2))+c",
             params=["a", "mu", "s", "c"], true_params=[10.0, 2.5, 0.8, 1.0],
             p0=[8.0, 2.0, 1.2, 0.5], variables=["x"], options={"absoluteSigma": True})

    def b(rng, s=s):
        x = np.linspace(-2.0, 7.0, 181)
        clean = f(s, {"x": x}, s["true_params"])
        sigma = 0.1 * np.sqrt(clean)
        y = clean + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(3, s, b)

    s = dict(name="two_variables", needs=[],
             tests="two independent variables (x1, x2), scattered (not gridded) design",
             model="a*exp(-b*x1)+c*sin(d*x2)", model_numpy="a*np.exp(-b*x1)+c*np.sin(d*x2)",
             params=["a", "b", "c", "d"], true_params=[3.0, 0.6, 1.5, 1.7],
             p0=[2.0, 0.4, 1.0, 1.5], variables=["x1", "x2"], options={})

    def b(rng, s=s):
        x1 = rng.uniform(0.0, 5.0, 250)
        x2 = rng.uniform(0.0, 4.0, 250)
        y = f(s, {"x1": x1, "x2": x2}, s["true_params"]) + 0.05 * rng.standard_normal(x1.size)
        return {"x1": x1, "x2": x2, "y": y}
    add(4, s, b)

    s = dict(name="cobb_douglas_sigma", needs=[],
             tests="two variables with parameters in the exponents (x1^b*x2^c), weighted, relative sigma",
             model="a*x1^b*x2^c", model_numpy="a*x1**b*x2**c",
             params=["a", "b", "c"], true_params=[2.0, 0.3, 0.6], p0=[1.0, 0.5, 0.5],
             variables=["x1", "x2"], options={"absoluteSigma": False})

    def b(rng, s=s):
        x1 = rng.uniform(1.0, 20.0, 160)
        x2 = rng.uniform(1.0, 10.0, 160)
        clean = f(s, {"x1": x1, "x2": x2}, s["true_params"])
        sigma = 0.03 * clean
        y = clean + sigma * rng.standard_normal(x1.size)
        return {"x1": x1, "x2": x2, "y": y, "sigma": sigma}
    add(5, s, b)

    s = dict(name="double_exponential", needs=[],
             tests="5 parameters: two exponential decays (rates 10x apart) and a constant",
             model="a1*exp(-b1*x)+a2*exp(-b2*x)+c", model_numpy="a1*np.exp(-b1*x)+a2*np.exp(-b2*x)+c",
             params=["a1", "b1", "a2", "b2", "c"], true_params=[3.0, 2.0, 2.0, 0.2, 0.5],
             p0=[2.0, 1.5, 1.5, 0.3, 0.3], variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.0, 20.0, 300)
        y = f(s, {"x": x}, s["true_params"]) + 0.01 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(6, s, b)

    s = dict(name="two_gaussians_baseline", needs=[],
             tests="8 parameters: two overlapping Gaussian peaks on a linear baseline, weighted",
             model="a1*exp(-(x-m1)^2/(2*s1^2))+a2*exp(-(x-m2)^2/(2*s2^2))+c0+c1*x",
             model_numpy="a1*np.exp(-(x-m1)**2/(2*s1**2))+a2*np.exp(-(x-m2)**2/(2*s2**2))+c0+c1*x",
             params=["a1", "m1", "s1", "a2", "m2", "s2", "c0", "c1"],
             true_params=[6.0, 3.0, 0.6, 4.0, 5.0, 0.9, 1.0, 0.2],
             p0=[5.0, 2.8, 0.5, 3.0, 5.3, 1.1, 0.5, 0.1], variables=["x"],
             options={"absoluteSigma": False})

    def b(rng, s=s):
        x = np.linspace(0.0, 9.0, 400)
        sigma = np.full(x.size, 0.08)
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(7, s, b)

    s = dict(name="badly_scaled", needs=[],
             tests="parameters 8 orders of magnitude apart (a ~ 2e4, b ~ 3e-4), x up to 1e4",
             model="a*(1-exp(-b*x))", model_numpy="a*(1-np.exp(-b*x))",
             params=["a", "b"], true_params=[2.0e4, 3.0e-4], p0=[1.0e4, 1.0e-4],
             variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(50.0, 1.0e4, 120)
        y = f(s, {"x": x}, s["true_params"]) + 20.0 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(8, s, b)

    s = dict(name="piecewise_fixed_break", needs=[],
             tests="piecewise model with a comparison at a fixed breakpoint x = 4 (slope change and jump)",
             model="a+b*x+c*(x-4)*(x > 4)+d*(x > 4)",
             model_numpy="a+b*x+c*(x-4)*(x > 4).astype(float)+d*(x > 4).astype(float)",
             params=["a", "b", "c", "d"], true_params=[1.0, 0.5, -1.2, 2.0],
             p0=[0.5, 0.3, -0.5, 1.0], variables=["x"], options={})

    def b(rng, s=s):
        x = np.sort(rng.uniform(0.0, 10.0, 200))
        y = f(s, {"x": x}, s["true_params"]) + 0.2 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(9, s, b)

    s = dict(name="logistic", needs=[], tests="logistic growth curve (4 parameters)",
             model="c+L/(1+exp(-k*(x-x0)))", model_numpy="c+L/(1+np.exp(-k*(x-x0)))",
             params=["c", "L", "k", "x0"], true_params=[0.5, 10.0, 1.3, 4.0],
             p0=[0.0, 8.0, 1.0, 5.0], variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.0, 10.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.15 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(10, s, b)

    s = dict(name="atan_step", needs=[], tests="atan sigmoid (function atan), weighted, absolute sigma",
             model="a*atan(b*(x-c))+d", model_numpy="a*np.arctan(b*(x-c))+d",
             params=["a", "b", "c", "d"], true_params=[2.0, 1.5, 3.0, 4.0],
             p0=[1.0, 1.0, 2.5, 3.0], variables=["x"], options={"absoluteSigma": True})

    def b(rng, s=s):
        x = np.linspace(-3.0, 9.0, 160)
        sigma = np.full(x.size, 0.05)
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(11, s, b)

    s = dict(name="log_sqrt", needs=[], tests="log and sqrt of the variable and of a parameter expression",
             model="a*log(1+b*x)+c*sqrt(x)", model_numpy="a*np.log(1+b*x)+c*np.sqrt(x)",
             params=["a", "b", "c"], true_params=[3.0, 0.8, 0.5], p0=[1.0, 1.0, 1.0],
             variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.1, 30.0, 140)
        y = f(s, {"x": x}, s["true_params"]) + 0.05 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(12, s, b)

    s = dict(name="rational", needs=[], tests="rational function (division by a parameter polynomial)",
             model="(a+b*x)/(1+c*x+d*x^2)", model_numpy="(a+b*x)/(1+c*x+d*x**2)",
             params=["a", "b", "c", "d"], true_params=[1.0, 3.0, 0.5, 0.2],
             p0=[0.8, 2.0, 0.3, 0.3], variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.0, 10.0, 120)
        y = f(s, {"x": x}, s["true_params"]) + 0.01 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(13, s, b)

    s = dict(name="degenerate_product", needs=[], unique=False,
             tests="NOT UNIQUE: a and k enter only as a*k, a valley of optima; only the cost is compared",
             model="a*k*exp(-b*x)+c", model_numpy="a*k*np.exp(-b*x)+c",
             params=["a", "k", "b", "c"], true_params=[2.0, 1.5, 0.9, 0.3],
             p0=[1.0, 1.0, 0.5, 0.0], variables=["x"], options={})

    def b(rng, s=s):
        x = np.linspace(0.0, 6.0, 100)
        y = f(s, {"x": x}, s["true_params"]) + 0.02 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(14, s, b)

    # ---------------- bounded, linear loss ----------------
    s = dict(name="bounded_exp_lower_active", needs=["bounds"], expect_active=1,
             tests="offset c bounded below above its free optimum: c ends ON its lower bound",
             model="a*exp(-b*x)+c", model_numpy="a*np.exp(-b*x)+c",
             params=["a", "b", "c"], true_params=[5.0, 0.7, 1.0], p0=[3.0, 0.5, 1.6],
             variables=["x"], options={"bounds": {"a": [0.0, 100.0], "b": [0.0, 10.0], "c": [1.3, 5.0]}})

    def b(rng, s=s):
        x = np.linspace(0.0, 8.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.05 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(15, s, b)

    s = dict(name="bounded_gaussian_upper_active", needs=["bounds"], expect_active=1,
             tests="width s bounded above below its free optimum: s ends ON its upper bound; weighted; one-sided bounds",
             model="a*exp(-(x-mu)^2/(2*s^2))+c", model_numpy="a*np.exp(-(x-mu)**2/(2*s**2))+c",
             params=["a", "mu", "s", "c"], true_params=[10.0, 2.5, 1.0, 1.0],
             p0=[8.0, 2.0, 0.5, 0.5], variables=["x"],
             options={"bounds": {"a": [0.0, None], "s": [0.1, 0.8]}})

    def b(rng, s=s):
        x = np.linspace(-2.0, 7.0, 181)
        sigma = np.full(x.size, 0.2)
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(16, s, b)

    s = dict(name="bounded_cubic_two_active", needs=["bounds"], expect_active=2,
             tests="linear-in-parameters cubic (convex: unique optimum) with c2 ON its upper and c3 ON its lower bound",
             model="c0+c1*x+c2*x^2+c3*x^3", model_numpy="c0+c1*x+c2*x**2+c3*x**3",
             params=["c0", "c1", "c2", "c3"], true_params=[1.0, -2.0, 0.8, -0.1],
             p0=[0.0, 0.0, 0.0, 0.0], variables=["x"],
             options={"bounds": {"c2": [None, 0.5], "c3": [-0.05, None]}})

    def b(rng, s=s):
        x = np.linspace(-1.0, 5.0, 130)
        y = f(s, {"x": x}, s["true_params"]) + 0.1 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(17, s, b)

    s = dict(name="bounded_logistic_inactive", needs=["bounds"], expect_active=0,
             tests="bounds on every parameter, none active: must equal the unbounded fit (with covariance)",
             model="c+L/(1+exp(-k*(x-x0)))", model_numpy="c+L/(1+np.exp(-k*(x-x0)))",
             params=["c", "L", "k", "x0"], true_params=[0.5, 10.0, 1.3, 4.0],
             p0=[0.0, 8.0, 1.0, 5.0], variables=["x"],
             options={"bounds": {"c": [-5.0, 5.0], "L": [1.0, 50.0], "k": [0.1, 10.0], "x0": [0.0, 10.0]}})

    def b(rng, s=s):
        x = np.linspace(0.0, 10.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.15 * rng.standard_normal(x.size)
        return {"x": x, "y": y}
    add(18, s, b)

    s = dict(name="bounded_double_exp_inactive", needs=["bounds"], expect_active=0,
             tests="5 parameters, rates boxed apart (b1 in [1, 5], b2 in [0.01, 0.9]) to fix the labels; inactive; weighted, absolute sigma",
             model="a1*exp(-b1*x)+a2*exp(-b2*x)+c", model_numpy="a1*np.exp(-b1*x)+a2*np.exp(-b2*x)+c",
             params=["a1", "b1", "a2", "b2", "c"], true_params=[3.0, 2.0, 2.0, 0.2, 0.5],
             p0=[2.0, 1.5, 1.5, 0.3, 0.3], variables=["x"],
             options={"absoluteSigma": True, "bounds": {"b1": [1.0, 5.0], "b2": [0.01, 0.9]}})

    def b(rng, s=s):
        x = np.linspace(0.0, 20.0, 300)
        sigma = 0.005 + 0.005 * np.exp(-x / 5)
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        return {"x": x, "y": y, "sigma": sigma}
    add(19, s, b)

    # ---------------- robust losses (10% gross outliers) ----------------
    s = dict(name="robust_soft_l1_exp", needs=["loss"],
             tests="loss 'soft_l1', fScale 0.1, exponential decay with 10% outliers",
             model="a*exp(-b*x)+c", model_numpy="a*np.exp(-b*x)+c",
             params=["a", "b", "c"], true_params=[5.0, 0.7, 1.2], p0=[3.0, 0.3, 0.5],
             variables=["x"], options={"loss": "soft_l1", "fScale": 0.1})

    def b(rng, s=s):
        x = np.linspace(0.0, 8.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.05 * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 1.0, 4.0)
        return {"x": x, "y": y}, idx
    add(20, s, b)

    s = dict(name="robust_huber_gaussian_sigma", needs=["loss"],
             tests="loss 'huber', fScale 1.5 (in units of sigma), weighted Gaussian peak with 10% outliers",
             model="a*exp(-(x-mu)^2/(2*s^2))+c", model_numpy="a*np.exp(-(x-mu)**2/(2*s**2))+c",
             params=["a", "mu", "s", "c"], true_params=[10.0, 2.5, 0.8, 1.0],
             p0=[8.0, 2.0, 1.2, 0.5], variables=["x"], options={"loss": "huber", "fScale": 1.5})

    def b(rng, s=s):
        x = np.linspace(-2.0, 7.0, 180)
        sigma = np.full(x.size, 0.2)
        y = f(s, {"x": x}, s["true_params"]) + sigma * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 2.0, 6.0)
        return {"x": x, "y": y, "sigma": sigma}, idx
    add(21, s, b)

    s = dict(name="robust_cauchy_sine", needs=["loss"],
             tests="loss 'cauchy', fScale 0.2, damped sine with 10% outliers",
             model="a*exp(-d*x)*sin(w*x+phi)+c", model_numpy="a*np.exp(-d*x)*np.sin(w*x+phi)+c",
             params=["a", "d", "w", "phi", "c"], true_params=[3.0, 0.15, 2.0, 0.7, 1.0],
             p0=[2.5, 0.1, 1.95, 0.5, 0.8], variables=["x"], options={"loss": "cauchy", "fScale": 0.2})

    def b(rng, s=s):
        x = np.linspace(0.0, 12.0, 240)
        y = f(s, {"x": x}, s["true_params"]) + 0.1 * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 2.0, 5.0)
        return {"x": x, "y": y}, idx
    add(22, s, b)

    s = dict(name="robust_arctan_logistic", needs=["loss"],
             tests="loss 'arctan', fScale 0.3, logistic curve with 10% outliers",
             model="c+L/(1+exp(-k*(x-x0)))", model_numpy="c+L/(1+np.exp(-k*(x-x0)))",
             params=["c", "L", "k", "x0"], true_params=[0.5, 10.0, 1.3, 4.0],
             p0=[0.0, 9.0, 1.0, 4.5], variables=["x"], options={"loss": "arctan", "fScale": 0.3})

    def b(rng, s=s):
        x = np.linspace(0.0, 10.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.15 * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 3.0, 8.0)
        return {"x": x, "y": y}, idx
    add(23, s, b)

    s = dict(name="robust_huber_line", needs=["loss"],
             tests="loss 'huber', fScale 0.5, straight line (linear in parameters) with 10% outliers",
             model="a+b*x", model_numpy="a+b*x",
             params=["a", "b"], true_params=[2.0, 0.75], p0=[0.0, 0.0],
             variables=["x"], options={"loss": "huber", "fScale": 0.5})

    def b(rng, s=s):
        x = np.linspace(0.0, 10.0, 100)
        y = f(s, {"x": x}, s["true_params"]) + 0.3 * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 3.0, 10.0)
        return {"x": x, "y": y}, idx
    add(24, s, b)

    s = dict(name="robust_soft_l1_bounded", needs=["bounds", "loss"], expect_active=1,
             tests="loss 'soft_l1', fScale 0.1 together with bounds; c ends ON its lower bound",
             model="a*exp(-b*x)+c", model_numpy="a*np.exp(-b*x)+c",
             params=["a", "b", "c"], true_params=[5.0, 0.7, 1.2], p0=[3.0, 0.3, 1.6],
             variables=["x"], options={"loss": "soft_l1", "fScale": 0.1, "bounds": {"c": [1.4, 3.0]}})

    def b(rng, s=s):
        x = np.linspace(0.0, 8.0, 150)
        y = f(s, {"x": x}, s["true_params"]) + 0.05 * rng.standard_normal(x.size)
        y, idx = outliers(rng, y, 0.10, 1.0, 4.0)
        return {"x": x, "y": y}, idx
    add(25, s, b)

    return out


def versions():
    return {"scipy": scipy.__version__, "numpy": np.__version__, "python": platform.python_version()}


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    written = []
    for pid, spec, build in problems():
        if only and spec["name"] not in only:
            continue
        rng = np.random.default_rng([SEED, pid])
        built = build(rng)
        data, idx = built if isinstance(built, tuple) else (built, None)
        ref = solve(spec, data)
        record = {
            "name": spec["name"],
            "id": pid,
            "tests": spec["tests"],
            "needs": spec["needs"],
            "unique": spec.get("unique", True),
            "model": spec["model"],
            "model_numpy": spec["model_numpy"],
            "params": spec["params"],
            "true_params": spec["true_params"],
            "p0": spec["p0"],
            "variables": spec["variables"],
            "weighted": "sigma" in data,
            "options": spec["options"],
            "scipy": ref,
            "outlier_indices": None if idx is None else [int(i) for i in idx],
            "n_points": int(len(data["y"])),
            "seed": [SEED, pid],
            "versions": versions(),
            "data": {k: floats(v) for k, v in data.items()},
        }
        path = FIXTURES / f"{spec['name']}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        written.append(spec["name"])
        print(f"{spec['name']:32s} needs={spec['needs']!s:20s} cost={ref['cost']:.12g} "
              f"nfev={ref['nfev']} status={ref['status']} active={ref['active_mask']} "
              f"popt={[float('%.10g' % v) for v in ref['popt']]}")
    if not only:
        stale = {p.stem for p in FIXTURES.glob("*.json")} - set(written)
        assert not stale, f"fixtures with no problem here (remove them): {sorted(stale)}"


if __name__ == "__main__":
    main()
