/**
 * CSV files with a header row naming the columns, plain or gzipped (.gz).
 * The file is streamed once at open time into a buffer-or-spill store
 * (store.ts), never loaded whole, and later passes read from the store.
 *
 * Format: comma-separated; fields may be quoted ("1.5", with "" for a quote
 * and commas or line breaks inside); \n or \r\n line ends; an optional UTF-8
 * byte order mark; blank lines are skipped. Every data row has as many fields
 * as the header. A value is a decimal number (parsed by Number(), which rounds
 * correctly, so values written with String(v) come back bit for bit) or
 * nan / inf / infinity in any case with an optional sign; the fit's own data
 * check reports non-finite values later, with their row. A record longer
 * than kMaxRecordChars (1 MiB) is an error, so memory stays bounded whatever
 * the file holds.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import type { ColumnSource, OpenSourceOptions } from '../source.js';
import { openForReading } from './positionedRead.js';
import { badFile, csvBadRecord, csvNotANumber, readFailed } from './sourceErrors.js';
import { checkOpenSourceOptions, RowStoreWriter, StoredSource } from './store.js';

/** Rows parsed before they are handed to the store (fewer for a very wide file: see kBatchBytes). */
const kBatchRows = 8192;
/** Most bytes of parsed values held before they are handed to the store. */
const kBatchBytes = 16 << 20;
/**
 * Longest record (one row: a line, or several inside quotes) read, in
 * characters. A longer one is refused as soon as it is seen, so a file
 * without line ends, or with a stray quote, costs at most this much memory.
 * 1 MiB holds a row of 40,000 numbers of 25 characters.
 */
export const kMaxRecordChars = 1 << 20;
/** Column names an error message lists before "and N more". */
const kListedNames = 12;
const kDecimal = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const kNonFinite = /^([+-]?)(nan|inf|infinity)$/i;

/** The value of a trimmed field, or undefined if it is not a number. */
function parseValue(text: string): number | undefined {
  if (kDecimal.test(text)) return Number(text);
  const special = kNonFinite.exec(text);
  if (!special) return undefined;
  if (special[2]!.toLowerCase() === 'nan') return NaN;
  return special[1] === '-' ? -Infinity : Infinity;
}

/** A record (one row, possibly spanning lines inside quotes) and the line it starts on. */
interface CsvRecord {
  readonly text: string;
  readonly line: number;
}

/** Cuts decoded text into records at line ends that are not inside quotes; refuses records over kMaxRecordChars. */
class RecordSplitter {
  readonly #path: string;
  #pending = '';
  #line = 1;
  /** Where to look for the next line end in #pending, and whether #pending[0 .. there) is inside quotes. */
  #scanned = 0;
  #inQuotes = false;

  constructor(path: string) {
    this.#path = path;
  }

  *push(text: string): Generator<CsvRecord> {
    this.#pending += text;
    let recordStart = 0;
    // Kept across lines: searching afresh per line would rescan the rest of a quote-free buffer every time.
    let nextQuote = this.#pending.indexOf('"', this.#scanned);
    for (;;) {
      const end = this.#pending.indexOf('\n', this.#scanned);
      if (end === -1) break;
      for (; nextQuote !== -1 && nextQuote < end; nextQuote = this.#pending.indexOf('"', nextQuote + 1)) {
        this.#inQuotes = !this.#inQuotes;
      }
      this.#scanned = end + 1;
      if (this.#inQuotes) continue;
      if (end - recordStart > kMaxRecordChars) throw this.#tooLong();
      yield* this.#emit(this.#pending.slice(recordStart, end));
      recordStart = end + 1;
    }
    this.#pending = this.#pending.slice(recordStart);
    this.#scanned -= recordStart;
    if (this.#pending.length > kMaxRecordChars) throw this.#tooLong();
  }

  /** The error for a record past kMaxRecordChars, at the line it starts on. */
  #tooLong(): RangeError {
    const why = this.#inQuotes
      ? `a quoted field opened here is still open after ${kMaxRecordChars} characters (is a '"' missing or stray?)`
      : `the record is longer than ${kMaxRecordChars} characters, the most nlfit reads as one row (is this a CSV file with line ends?)`;
    return csvBadRecord(this.#path, this.#line, why);
  }

  /** The last record, if the text does not end with a line end. */
  *end(): Generator<CsvRecord> {
    if (this.#pending !== '') yield* this.#emit(this.#pending);
    this.#pending = '';
  }

  *#emit(raw: string): Generator<CsvRecord> {
    const line = this.#line;
    for (let i = raw.indexOf('\n'); i !== -1; i = raw.indexOf('\n', i + 1)) this.#line++;
    this.#line++;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.trim() !== '') yield { text, line };
  }
}

/** The fields of a record, unquoted (not trimmed). */
function splitFields(record: CsvRecord, path: string): string[] {
  const { text, line } = record;
  if (!text.includes('"')) return text.split(',');
  const fields: string[] = [];
  let at = 0;
  for (;;) {
    while (text[at] === ' ' || text[at] === '\t') at++;
    let field: string;
    if (text[at] === '"') {
      field = '';
      for (at++; ; at++) {
        if (at >= text.length) throw csvBadRecord(path, line, `field ${fields.length + 1} opens a quote that is never closed`);
        if (text[at] === '"') {
          if (text[at + 1] !== '"') break;
          at++;
        }
        field += text[at];
      }
      at++;
      while (text[at] === ' ' || text[at] === '\t') at++;
      if (at < text.length && text[at] !== ',') {
        throw csvBadRecord(path, line, `field ${fields.length + 1} has text after its closing quote`);
      }
    } else {
      const comma = text.indexOf(',', at);
      field = text.slice(at, comma === -1 ? text.length : comma);
      at = comma === -1 ? text.length : comma;
    }
    fields.push(field);
    if (at >= text.length) return fields;
    at++;
  }
}

/** The decoded text of a file, gunzipped if `gzip`; read errors name the file. */
async function* textOf(input: Readable, path: string, gzip: boolean): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let first = true;
  try {
    for await (const bytes of input) {
      let text = decoder.write(bytes as Buffer);
      if (first && text !== '') {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        first = false;
      }
      yield text;
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw readFailed(path, gzip ? `cannot decompress: ${reason}` : `read failed: ${reason}`, error);
  }
  yield decoder.end();
}

/** Checks the header's column names. */
function headerNames(record: CsvRecord, path: string): string[] {
  const names = splitFields(record, path).map((name) => name.trim());
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (name === '') throw csvBadRecord(path, record.line, `column ${i + 1} of the header has no name`);
    if (seen.has(name)) throw csvBadRecord(path, record.line, `the header names column '${name}' twice`);
    seen.add(name);
  });
  return names;
}

/** The header's names for a message, the first few of a wide file. */
function listedNames(names: readonly string[]): string {
  const listed = names.slice(0, kListedNames).join(', ');
  return names.length > kListedNames ? `${listed}, and ${names.length - kListedNames} more` : listed;
}

/** The rows of one CSV file on their way into a store: the header, then batches of parsed rows. */
class CsvIngest {
  readonly #path: string;
  readonly #options: OpenSourceOptions;
  #names: string[] | null = null;
  #writer: RowStoreWriter | null = null;
  #batch: Float64Array[] = [];
  #batchRows = 0;
  #batchCapacity = 0;

  constructor(path: string, options: OpenSourceOptions) {
    this.#path = path;
    this.#options = options;
  }

  async take(record: CsvRecord): Promise<void> {
    const path = this.#path;
    const names = this.#names;
    if (names === null) {
      this.#names = headerNames(record, path);
      this.#writer = new RowStoreWriter(this.#names.length, this.#options);
      this.#batchCapacity = Math.max(1, Math.min(kBatchRows, Math.floor(kBatchBytes / (8 * this.#names.length))));
      this.#batch = this.#names.map(() => new Float64Array(this.#batchCapacity));
      return;
    }
    const fields = splitFields(record, path);
    if (fields.length !== names.length) {
      throw csvBadRecord(path, record.line, `expected ${names.length} fields (${listedNames(names)}), found ${fields.length}`);
    }
    for (let c = 0; c < fields.length; c++) {
      const text = fields[c]!.trim();
      const value = parseValue(text);
      if (value === undefined) throw csvNotANumber(path, record.line, names[c]!, text);
      this.#batch[c]![this.#batchRows] = value;
    }
    if (++this.#batchRows === this.#batchCapacity) await this.#flush();
  }

  async #flush(): Promise<void> {
    await this.#writer!.append(this.#batch, this.#batchRows);
    this.#batchRows = 0;
  }

  async finish(): Promise<ColumnSource> {
    if (this.#names === null || this.#writer === null) {
      throw badFile(this.#path, 'the file is empty; expected a header row naming the columns');
    }
    await this.#flush();
    return new StoredSource('csv', this.#path, this.#names, this.#writer.finish());
  }

  async abort(): Promise<void> {
    await this.#writer?.abort();
  }
}

/**
 * Opens a CSV file (.csv or .csv.gz) and ingests it; `field` names the path
 * if it cannot be opened. Errors give the line and column:
 * "data.csv line 17, column 'y': 'abc' is not a number".
 *
 *   const source = await csvSource('data.csv', { bufferBytes: 256 << 20 });
 */
export async function csvSource(path: string, options: OpenSourceOptions, field = 'data'): Promise<ColumnSource> {
  const checked = checkOpenSourceOptions(options);
  const { fh } = await openForReading(path, field);
  const gzip = path.toLowerCase().endsWith('.gz');
  const fileStream = createReadStream(path, { fd: fh, highWaterMark: 1 << 20 });
  let input: Readable = fileStream;
  if (gzip) {
    const gunzip = createGunzip();
    fileStream.on('error', (error) => gunzip.destroy(error));
    input = fileStream.pipe(gunzip);
  }
  const ingest = new CsvIngest(path, checked);
  try {
    const splitter = new RecordSplitter(path);
    for await (const text of textOf(input, path, gzip)) {
      for (const record of splitter.push(text)) await ingest.take(record);
    }
    for (const record of splitter.end()) await ingest.take(record);
    return await ingest.finish();
  } catch (error) {
    await ingest.abort();
    throw error;
  } finally {
    fileStream.destroy();
    input.destroy();
  }
}
