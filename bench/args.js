/**
 * The command line of `npm run bench`. Unknown flags and bad values are
 * usage errors (exit code 2).
 */

export const usage = `Usage: npm run bench -- [options]     (or: node bench/run.js [options])

Fits the same generated data with nlfit (1 and all threads, pool and calling
thread), ml-levenberg-marquardt, scipy curve_fit ('lm' and 'trf', when python3
has scipy) and a C++ roofline loop; prints markdown tables and PASS/FAIL lines
for the targets, and writes JSON and an SVG chart to bench/results/.

Options:
  --quick          a subset under two minutes: exp3 only (ml-lm up to 1e6) and the cold start
  --large          add 1e8 points
  --filter <text>  only trials whose id ("exp3/1e6/nlfit-2t", "coldstart/1e3/nlfit")
                   contains <text> or matches it as a regular expression; repeatable
  --runs <n>       timed runs per nlfit trial (best and median are reported;
                   peers run once); default 5, 3 with --quick
  --timeout <s>    cap on each peer's fit (nlfit: <s> per run); default 120
  --publish        also copy the chart to docs/benchmark.svg (embedded by the README)
  --help           this text`;

export class UsageError extends Error {}

/**
 * @param {string[]} argv arguments after the script name
 * @returns {{ help: boolean, quick: boolean, large: boolean, publish: boolean, filters: string[], runs: number, timeoutS: number }}
 */
export function parseArgs(argv) {
  const options = { help: false, quick: false, large: false, publish: false, filters: [], runs: null, timeoutS: 120 };
  const switches = { '--help': 'help', '-h': 'help', '--quick': 'quick', '--large': 'large', '--publish': 'publish' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') && argv[i].includes('=') ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
    if (flag in switches) {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value`);
      options[switches[flag]] = true;
      continue;
    }
    if (!['--filter', '--runs', '--timeout'].includes(flag)) throw new UsageError(`unknown option '${argv[i]}'`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    if (flag === '--filter') options.filters.push(value);
    else if (flag === '--runs') options.runs = positiveNumber(flag, value, true);
    else options.timeoutS = positiveNumber(flag, value, false);
  }
  options.runs ??= options.quick ? 3 : 5;
  return options;
}

function positiveNumber(flag, text, integer) {
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${flag} expects a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
  }
  return value;
}
