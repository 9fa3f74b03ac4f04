/**
 * Derived columns and row filters: the `transform` and `where` fit options,
 * evaluated by the native kernel one chunk of rows at a time as data streams.
 *
 *   transform: { y: 'log(counts)', x: 't*1e-3' }
 *   where: 'x > 0 && y < 1e6'
 *
 * A transform is an expression over the *source* columns, never over another
 * transform's output: transforms are evaluated side by side, so their order
 * does not matter (`{ x: 'x*2', y: 'x' }` gives y the source x). Its result
 * replaces the source column of the same name or adds a column.
 *
 * The filter is a condition over the *output* columns, so `where: 'y > 0'`
 * tests the transformed y. A row is kept when the condition is exactly 1
 * (true), and dropped otherwise, NaN included; every output column is
 * compacted the same way, keeping row order. Comparisons with a NaN are false
 * (except `!=`), so `where: 'y > 0'` also drops the rows where a transform
 * gave NaN, such as the log of a negative count; `!(y <= 0)` would keep them.
 * The NaN rules are those of the model language (src/model/bytecode.ts).
 *
 * Expressions have no parameters: every name is a column, `pi` or `e`.
 * Values are computed row by row, so applying a stage chunk by chunk gives
 * the same bits as applying it to the whole table at once.
 */
import { closestName, invalidInput, invalidType, invalidRange, ModelError } from '../errors.js';
import { checkLayout } from '../exec/layout.js';
import { compileModel, type CompiledModel } from '../model/compile.js';
import { isIdentifier } from '../model/lexer.js';
import { kConstants, kFunctions, parseExpression, reduceExpr } from '../model/parser.js';
import { loadAddon, type NativeKernel } from '../native.js';

/** The fit options this stage reads (other keys of the object are ignored). */
export interface DeriveOptions {
  /** Output column name -> expression over the source columns. */
  transform?: Record<string, string>;
  /** A condition over the output columns; rows where it is not 1 are dropped. */
  where?: string;
}

/** One chunk after the stage. */
export interface DerivedChunk {
  /** Every output column, each exactly `count` values long. */
  columns: Record<string, Float64Array>;
  /** Rows kept. */
  count: number;
  /** Rows the filter dropped. */
  dropped: number;
}

export interface DeriveStage {
  /** The source columns apply() reads, in source order. */
  readonly inputColumns: readonly string[];
  /** The columns apply() returns: source order, transformed ones in place, new ones after, in transform order. */
  readonly outputColumns: readonly string[];
  /**
   * Evaluates the transforms, then the filter, on rows [0, count) of `chunk`
   * (which must hold every input column, each at least `count` long). The
   * result's columns may be views of the chunk's arrays (passthrough columns
   * when no row is dropped); the chunk is never modified. Throws TypeError or
   * RangeError for a missing or short column.
   *
   * A stage holds native kernels of the thread that first applies it: build
   * one stage per thread (compileDerive with the same options).
   */
  apply(chunk: Readonly<Record<string, Float64Array>>, count: number): DerivedChunk;
}

/**
 * Compiles the `transform` and `where` options against the source's column
 * names. `needed` lists the output columns the caller will read (default:
 * all); the stage then reads and returns only what those and the filter
 * need, though every expression is still checked. Throws ModelError, naming
 * the option and pointing into its expression, for syntax errors and unknown
 * names, and TypeError or RangeError for malformed options.
 * @example
 * const stage = compileDerive({ transform: { y: 'log(counts)' }, where: 'y > 0' }, ['t', 'counts']);
 * stage.outputColumns // ['t', 'counts', 'y']
 * const { columns, count, dropped } = stage.apply({ t, counts }, t.length);
 */
export function compileDerive(options: DeriveOptions, sourceColumns: readonly string[], needed?: readonly string[]): DeriveStage {
  if (typeof options !== 'object' || options === null) throw invalidType('options', 'an object', options);
  checkNames('sourceColumns', sourceColumns);
  if (needed !== undefined) checkNames('needed', needed);
  const transform = checkTransform(options.transform);
  const where = options.where;
  if (where !== undefined && typeof where !== 'string') throw invalidType('where', 'a string', where);

  const transforms = Object.entries(transform).map(([name, source]) => ({
    name,
    model: compileExpression(`transform.${name}`, source, sourceColumns, 'the source columns'),
  }));
  const available = [...sourceColumns, ...transforms.map((t) => t.name).filter((name) => !sourceColumns.includes(name))];
  const filter = where === undefined ? undefined : compileExpression('where', where, available, 'the columns after transform');

  let outputColumns = available;
  if (needed !== undefined) {
    for (const name of needed) {
      if (!available.includes(name)) throw invalidInput('data', `no column '${name}' (${columnList(available, 'the columns after transform')})`);
    }
    outputColumns = available.filter((name) => needed.includes(name));
  }
  // The columns whose values apply() must have: the outputs and what the filter reads.
  const wanted = new Set([...outputColumns, ...(filter?.variableNames ?? [])]);
  const liveTransforms = transforms.filter((t) => wanted.has(t.name));
  const reads = new Set(liveTransforms.flatMap((t) => t.model.variableNames));
  for (const name of wanted) if (!Object.hasOwn(transform, name)) reads.add(name);
  const inputColumns = sourceColumns.filter((name) => reads.has(name));
  return new CompiledStage(inputColumns, outputColumns, liveTransforms, filter);
}

interface Transform {
  readonly name: string;
  readonly model: CompiledModel;
}

class CompiledStage implements DeriveStage {
  /** Native kernels, created on first use: transforms in order, then the filter. */
  private kernels: NativeKernel[] | undefined;
  private readonly noParams = new Float64Array(0);

  constructor(
    readonly inputColumns: readonly string[],
    readonly outputColumns: readonly string[],
    private readonly transforms: readonly Transform[],
    private readonly filter: CompiledModel | undefined,
  ) {}

  apply(chunk: Readonly<Record<string, Float64Array>>, count: number): DerivedChunk {
    if (!Number.isSafeInteger(count) || count < 0) throw invalidRange('count', 'a non-negative integer', count);
    if (typeof chunk !== 'object' || chunk === null) throw invalidType('chunk', 'an object of Float64Array columns', chunk);
    for (const name of this.inputColumns) {
      const column: unknown = chunk[name];
      if (!(column instanceof Float64Array)) throw invalidType(`chunk.${name}`, 'a Float64Array', column);
      if (column.length < count) throw invalidRange(`chunk.${name}`, `at least ${count} values`, column);
    }
    const kernels = (this.kernels ??= this.createKernels());
    // Every column the outputs and the filter read: the source's, then the transforms'.
    const values = new Map<string, Float64Array>();
    for (const name of this.inputColumns) values.set(name, chunk[name]!.subarray(0, count));
    const computed = new Set<string>();
    this.transforms.forEach(({ name, model }, k) => {
      values.set(name, this.evaluate(kernels[k]!, model, (column) => chunk[column]!, count));
      computed.add(name);
    });
    const columns: Record<string, Float64Array> = {};
    for (const name of this.outputColumns) columns[name] = values.get(name)!;
    if (this.filter === undefined) return { columns, count, dropped: 0 };

    const keep = this.evaluate(kernels[this.transforms.length]!, this.filter, (column) => values.get(column)!, count);
    let kept = 0;
    for (let i = 0; i < count; i++) if (keep[i] === 1) kept++;
    if (kept === count) return { columns, count, dropped: 0 };
    for (const name of this.outputColumns) {
      const source = columns[name]!;
      // A transform's own array is compacted in place; a passthrough column is the caller's.
      const target = computed.has(name) ? source : new Float64Array(kept);
      let k = 0;
      for (let i = 0; i < count; i++) if (keep[i] === 1) target[k++] = source[i]!;
      columns[name] = target.subarray(0, kept);
    }
    return { columns, count: kept, dropped: count - kept };
  }

  private evaluate(kernel: NativeKernel, model: CompiledModel, column: (name: string) => Float64Array, count: number): Float64Array {
    const out = new Float64Array(count);
    if (count > 0) kernel.predict(this.noParams, model.variableNames.map(column), 0, count, out);
    return out;
  }

  private createKernels(): NativeKernel[] {
    const addon = loadAddon();
    checkLayout(addon);
    const models = this.transforms.map((t) => t.model);
    if (this.filter !== undefined) models.push(this.filter);
    return models.map((model) => new addon.Kernel(model.code, model.consts));
  }
}

function checkNames(field: string, names: unknown): void {
  if (!Array.isArray(names)) throw invalidType(field, 'an array of strings', names);
  names.forEach((name: unknown, k) => {
    if (typeof name !== 'string') throw invalidType(`${field}[${k}]`, 'a string', name);
  });
}

function checkTransform(transform: unknown): Readonly<Record<string, string>> {
  if (transform === undefined) return {};
  if (typeof transform !== 'object' || transform === null || Array.isArray(transform)) {
    throw invalidType('transform', 'an object mapping column names to expressions', transform);
  }
  for (const [name, source] of Object.entries(transform)) {
    if (!isIdentifier(name)) {
      throw invalidInput('transform', `'${name}' is not a valid column name (letters, digits and '_', not starting with a digit)`);
    }
    if (typeof source !== 'string') throw invalidType(`transform.${name}`, 'a string', source);
  }
  return transform as Record<string, string>;
}

/**
 * Compiles one expression with no parameters over `columns`. Every error is a
 * ModelError whose message starts with `field`, so the user knows which
 * option holds the expression it points into.
 */
function compileExpression(field: string, source: string, columns: readonly string[], described: string): CompiledModel {
  try {
    checkNamesAreColumns(source, columns, described);
    return compileModel(source, { params: [], columns });
  } catch (error) {
    if (!(error instanceof ModelError)) throw error;
    const marker = ` at position ${error.position}\n`;
    const message = error.message.slice(0, error.message.indexOf(marker));
    throw new ModelError(`${field}: ${message}`, source, error.position);
  }
}

/** Rejects, at its position, the first name that is neither a column nor pi or e. */
function checkNamesAreColumns(source: string, columns: readonly string[], described: string): void {
  const known = new Set(columns);
  reduceExpr<void>(parseExpression(source), (expr) => {
    if (expr.kind !== 'name' || known.has(expr.name) || kConstants.has(expr.name) || kFunctions.has(expr.name)) return;
    throw new ModelError(unknownColumnText(expr.name, columns, described), source, expr.start);
  });
}

const kListedColumns = 12;

function unknownColumnText(name: string, columns: readonly string[], described: string): string {
  // One or two edits make any short name into any other: suggest only for longer names.
  const close = closestName(name, columns);
  if (close !== undefined && (name.length >= 3 || close.toLowerCase() === name.toLowerCase())) {
    return `unknown column '${name}' (did you mean '${close}'?)`;
  }
  return `unknown column '${name}' (expressions have no parameters; ${columnList(columns, described)})`;
}

/** "the source columns are 'a', 'b'", shortened for wide tables. */
function columnList(columns: readonly string[], described: string): string {
  if (columns.length === 0) return `there are no ${described.replace(/^the /, '')}`;
  const listed = columns.slice(0, kListedColumns).map((c) => `'${c}'`).join(', ');
  const more = columns.length > kListedColumns ? `, and ${columns.length - kListedColumns} more` : '';
  return `${described} are ${listed}${more}`;
}
