// Fuzzes nlfit's file readers (src/data/sources: .npy, CSV and gzipped CSV,
// raw binary), which are TypeScript: random mutations of valid files are
// written to disk and opened with openSource, every row of every column is
// read back, and the source closed, for a number of seconds.
//
//   npx tsc -p tsconfig.json && node test/fuzz/parsers.mjs [seconds] [--seed=N]
//
// A reader may refuse a file only with one of the library's data errors
// (error.code 'ERR_NLFIT_DATA'); anything else (a stack overflow, a TypeError
// from inside a parser, an error without a code) is a failure, and so is an
// input that keeps a reader busy for kHangMs or makes the process grow past
// kMaxRssBytes. The fuzzing runs in a worker thread, so a reader stuck in a
// synchronous loop is caught by the main thread; the input that failed is
// saved and its path printed. Prints executions, executions per second and
// the distinct outcomes (error messages with numbers and paths blanked).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';

const kHangMs = 15_000;
const kMaxInputBytes = 64 * 1024;
const kMaxRssBytes = 2 ** 31;
/** Shared state: [executions, input kind, input length, failed] then the input bytes. */
const kExecutions = 0;
const kKind = 1;
const kLength = 2;
const kFailed = 3;
const kHeaderInts = 4;

// ---- seeds --------------------------------------------------------------------

function npyBytes(descr, fortran, shape, values, version = 1) {
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const preamble = version === 1 ? 10 : 12;
  const padded = Math.ceil((preamble + dict.length + 1) / 64) * 64 - preamble;
  const header = Buffer.alloc(preamble + padded, 0x20);
  header.write('\x93NUMPY', 0, 'latin1');
  header[6] = version;
  header[7] = 0;
  if (version === 1) header.writeUInt16LE(padded, 8);
  else header.writeUInt32LE(padded, 8);
  header.write(dict, preamble, 'latin1');
  header[header.length - 1] = 0x0a;
  const item = descr.endsWith('8') ? 8 : 4;
  const data = Buffer.alloc(values.length * item);
  values.forEach((v, i) => {
    const big = descr.startsWith('>');
    if (item === 8) big ? data.writeDoubleBE(v, i * 8) : data.writeDoubleLE(v, i * 8);
    else big ? data.writeFloatBE(v, i * 4) : data.writeFloatLE(v, i * 4);
  });
  return Buffer.concat([header, data]);
}

const ramp = (n) => Array.from({ length: n }, (_, i) => i * 0.5 - 1);
const csvText = 'x,y,sigma\n0,1.5,0.1\n1,2.25,0.1\n2,-3e-2,0.2\n\n3,nan,1\n4,inf,1\n5,-Infinity,1\n';
const quotedCsv = '\ufeff"x","y"\r\n"1.5",2\r\n" 2",\t3 \r\n"3",4\r\n"4","5"';

/** Each kind: how to name the file, how to open it, and valid seed contents. */
const kinds = [
  { name: 'npy', file: 'a.npy', spec: (path, width) => ({ path, columns: Array.from({ length: width }, (_, i) => `c${i}`) }), seeds: [
    { bytes: npyBytes('<f8', false, [10], ramp(10)), width: 1 },
    { bytes: npyBytes('<f4', false, [6, 3], ramp(18), 2), width: 3 },
    { bytes: npyBytes('>f8', true, [5, 2], ramp(10), 3), width: 2 },
    { bytes: npyBytes('=f4', false, [0], []), width: 1 },
  ] },
  { name: 'csv', file: 'a.csv', spec: (path) => path, seeds: [{ bytes: Buffer.from(csvText) }, { bytes: Buffer.from(quotedCsv) }] },
  { name: 'csv.gz', file: 'a.csv.gz', spec: (path) => path, seeds: [{ bytes: gzipSync(csvText) }, { bytes: gzipSync(quotedCsv) }] },
  { name: 'bin', file: 'a.bin', spec: (path) => ({ x: path }), seeds: [{ bytes: Buffer.from(new Float64Array(ramp(16)).buffer) }] },
  { name: 'bin32', file: 'b.bin', spec: (path) => ({ y: { path, dtype: 'float32' } }), seeds: [{ bytes: Buffer.from(new Float32Array(ramp(12)).buffer) }] },
];

// ---- mutation -----------------------------------------------------------------

function random(state) {
  // xorshift32 over a one-element Uint32Array.
  let x = state[0];
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  state[0] = x;
  return x >>> 0;
}

const interestingText = ['(', ')', '[', "'", '"', ',', '\n', '\r', ' ', 'e', '-', '.', '9'.repeat(40), '1e999', '4294967296', '2147483648', 'True', 'None', '{', '}', ':', 'L', '\\'];
const interestingInts = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff, 2 ** 31, 64, 10, 12];

/** One random edit of `bytes` (a Buffer), never longer than kMaxInputBytes. */
function mutateOnce(bytes, state, splice) {
  const below = (n) => (n <= 0 ? 0 : random(state) % n);
  const at = below(bytes.length + 1);
  const before = bytes.subarray(0, at);
  const after = bytes.subarray(at);
  let out;
  switch (below(11)) {
    case 0: {
      out = Buffer.from(bytes);
      if (out.length > 0) out[below(out.length)] ^= 1 << below(8);
      break;
    }
    case 1: {
      out = Buffer.from(bytes);
      if (out.length > 0) out[below(out.length)] = below(256);
      break;
    }
    case 2:
      out = Buffer.concat([before, Buffer.from(interestingText[below(interestingText.length)], 'latin1'), after]);
      break;
    case 3: {
      // Repeat a character many times: deep brackets, long numbers, long lines.
      const char = interestingText[below(interestingText.length)].slice(0, 1);
      out = Buffer.concat([before, Buffer.alloc(1 + below(4096), char, 'latin1'), after]);
      break;
    }
    case 4: {
      out = Buffer.from(bytes);
      if (out.length >= 4) out.writeUInt32LE(interestingInts[below(interestingInts.length)] >>> 0, below(out.length - 3));
      break;
    }
    case 5:
      out = Buffer.concat([before, after.subarray(1 + below(16))]);
      break;
    case 6:
      out = bytes.subarray(0, at);
      break;
    case 7: {
      const piece = bytes.subarray(at, at + 1 + below(64));
      out = Buffer.concat([bytes.subarray(0, below(bytes.length + 1)), piece, bytes.subarray(below(bytes.length + 1))]);
      break;
    }
    case 8: {
      const other = splice[below(splice.length)];
      const from = below(other.length);
      out = Buffer.concat([before, other.subarray(from, from + 1 + below(128)), after]);
      break;
    }
    case 9: {
      // A digit run replaced by a huge or negative number.
      const text = bytes.toString('latin1');
      const match = [...text.matchAll(/\d+/g)];
      if (match.length === 0) return Buffer.from(bytes);
      const m = match[below(match.length)];
      const replacement = ['0', '-1', '99999999999999999999', '1152921504606846976', '4503599627370496', String(below(100000))][below(6)];
      out = Buffer.from(text.slice(0, m.index) + replacement + text.slice(m.index + m[0].length), 'latin1');
      break;
    }
    default:
      out = Buffer.concat([before, Buffer.from([below(256), below(256), below(256)]), after]);
  }
  return out.length > kMaxInputBytes ? out.subarray(0, kMaxInputBytes) : out;
}

// ---- one execution -------------------------------------------------------------

/**
 * An error message as an outcome: its file and what the error is about, with
 * the quoted text, the parenthesised detail and the numbers blanked (the file
 * content it echoes after a further ': ' dropped).
 */
function outcomeOf(message, dir) {
  const parts = message.split(dir).join('<dir>').split(': ');
  const kept = parts.slice(0, parts[1] === 'cannot decompress' ? 3 : 2).join(': ');
  return kept.replace(/'[^']*'/g, "'*'").replace(/\([^()]*\)/g, '(*)').replace(/\d+/g, '#').slice(0, 160);
}

async function runOne(openSource, kind, spec, state) {
  const bufferBytes = [0, 256, 1 << 20][random(state) % 3];
  const source = await openSource(spec, { bufferBytes });
  try {
    const chunk = 1 + (random(state) % 64);
    for (let start = 0; start < source.nRows; start += chunk) {
      const count = Math.min(chunk, source.nRows - start);
      const into = Object.fromEntries(source.columns.map((name) => [name, new Float64Array(count)]));
      await source.read(start, count, into);
      for (const values of Object.values(into)) {
        if (!(values instanceof Float64Array) || values.length !== count) throw new Error('read returned malformed columns');
      }
    }
    return `opened ${kind.name}`;
  } finally {
    await source.close();
  }
}

async function fuzzWorker({ shared, seconds, seed, dir }) {
  const { openSource } = await import('../../dist/index.js');
  const head = new Int32Array(shared, 0, kHeaderInts);
  const input = new Uint8Array(shared, kHeaderInts * 4);
  const state = new Uint32Array([seed >>> 0 || 1]);
  const splice = kinds.flatMap((k) => k.seeds.map((s) => s.bytes));
  const outcomes = new Map();
  // Every seed must open and read cleanly, or the mutants start from nothing.
  for (const kind of kinds) {
    for (const seedFile of kind.seeds) {
      const path = join(dir, kind.file);
      writeFileSync(path, seedFile.bytes);
      await runOne(openSource, kind, kind.spec(path, seedFile.width ?? 1), state);
    }
  }
  const deadline = performance.now() + seconds * 1000;
  let runs = 0;
  while (performance.now() < deadline) {
    const k = random(state) % kinds.length;
    const kind = kinds[k];
    const seedFile = kind.seeds[random(state) % kind.seeds.length];
    let bytes = seedFile.bytes;
    const edits = 1 + (random(state) % 4);
    for (let e = 0; e < edits; e++) bytes = mutateOnce(bytes, state, splice);
    input.set(bytes);
    Atomics.store(head, kKind, k);
    Atomics.store(head, kLength, bytes.length);
    const path = join(dir, kind.file);
    writeFileSync(path, bytes);
    let outcome;
    try {
      outcome = await runOne(openSource, kind, kind.spec(path, seedFile.width ?? 1), state);
    } catch (error) {
      const code = error?.code;
      if (code !== 'ERR_NLFIT_DATA' || !(error instanceof Error)) {
        Atomics.store(head, kFailed, 1);
        throw Object.assign(new Error(`a ${kind.name} file made openSource or read throw something other than a data error: ${error?.stack ?? error}`), { cause: error });
      }
      outcome = `${error.constructor.name}: ${outcomeOf(error.message, dir)}`;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    runs = Atomics.add(head, kExecutions, 1) + 1;
    if (runs % 256 === 0 && process.memoryUsage().rss > kMaxRssBytes) {
      Atomics.store(head, kFailed, 1);
      throw new Error(`the process grew past ${kMaxRssBytes} bytes of RSS`);
    }
  }
  return [...outcomes].sort((a, b) => b[1] - a[1]);
}

// ---- the main thread: run, watch, report ---------------------------------------

async function main() {
  const args = process.argv.slice(2);
  const seconds = Number(args.find((a) => !a.startsWith('--')) ?? 10);
  const seedArg = args.find((a) => a.startsWith('--seed='));
  const seed = seedArg ? Number(seedArg.slice('--seed='.length)) : (Date.now() ^ (process.pid << 16)) >>> 0;
  const dir = mkdtempSync(join(tmpdir(), 'nlfit-parser-fuzz-'));
  const shared = new SharedArrayBuffer(kHeaderInts * 4 + kMaxInputBytes);
  const head = new Int32Array(shared, 0, kHeaderInts);
  console.log(`parser fuzz: ${seconds} s, seed ${seed}`);

  const saveInput = (why) => {
    const kind = kinds[Atomics.load(head, kKind)];
    const bytes = new Uint8Array(shared, kHeaderInts * 4, Atomics.load(head, kLength)).slice();
    const path = join(dir, `${why}-${kind.file}`);
    writeFileSync(path, bytes);
    console.error(`parser fuzz: the input (${kind.name}, ${bytes.length} bytes) is saved in ${path}`);
  };

  const started = performance.now();
  const worker = new Worker(new URL(import.meta.url), { workerData: { shared, seconds, seed, dir } });
  let lastCount = -1;
  let lastChange = performance.now();
  const watch = setInterval(() => {
    const count = Atomics.load(head, kExecutions);
    if (count !== lastCount) {
      lastCount = count;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > kHangMs) {
      console.error(`parser fuzz: FAILED, one input has kept a reader busy for ${kHangMs / 1000} s`);
      saveInput('hang');
      void worker.terminate();
      process.exit(1);
    }
  }, 500);

  const outcomes = await new Promise((resolve) => {
    worker.once('message', (message) => resolve(message));
    worker.once('error', (error) => {
      console.error(`parser fuzz: FAILED: ${error.stack ?? error}`);
      if (Atomics.load(head, kFailed) === 1) saveInput('crash');
      process.exit(1);
    });
  });
  clearInterval(watch);
  const elapsed = (performance.now() - started) / 1000;
  const runs = Atomics.load(head, kExecutions);
  console.log(`parser fuzz: ${runs} executions in ${elapsed.toFixed(1)} s, ${Math.round(runs / elapsed)} exec/s, ${outcomes.length} distinct outcomes`);
  for (const [outcome, count] of outcomes) console.log(`${String(count).padStart(9)}  ${outcome}`);
  rmSync(dir, { recursive: true, force: true });
}

if (isMainThread) {
  await main();
} else {
  const { parentPort } = await import('node:worker_threads');
  parentPort.postMessage(await fuzzWorker(workerData));
}
