#!/usr/bin/env node
/**
 * ml-levenberg-marquardt in its own process, with its best options: the exact
 * Jacobian (`jacobianFunction`), the iteration count the trial gives (it has no
 * relative stopping rule; see mllmDefaultIterations in bench/trials.js) and its own `timeout`.
 * The parent also kills this process shortly after the same time. "passes"
 * are its iterations: each evaluates the model and Jacobian once and the
 * model once more for the new error.
 */
import { levenbergMarquardt } from 'ml-levenberg-marquardt';
import { modelById } from '../trials.js';
import { announceFitStart, readColumn, readJob, report, reportError } from './protocol.js';

const job = readJob();
let started = null;
try {
  const model = modelById(job.model);
  const x = readColumn(job.xPath, job.n);
  const y = readColumn(job.yPath, job.n);
  announceFitStart();
  started = performance.now();
  const result = levenbergMarquardt({ x, y }, model.value, {
    initialValues: job.p0,
    jacobianFunction: model.gradient,
    maxIterations: job.iterations,
    timeout: job.timeoutS,
  });
  report({
    wallMs: performance.now() - started,
    passes: result.iterations,
    params: result.parameterValues,
    sumOfSquares: result.parameterError,
  });
} catch (error) {
  const elapsed = started === null ? null : performance.now() - started;
  // Its timeout is an Error thrown after the iteration that crossed it.
  const timedOut = error instanceof Error && /execution time is over/.test(error.message);
  reportError(error, { timedOut, wallMs: elapsed });
}
