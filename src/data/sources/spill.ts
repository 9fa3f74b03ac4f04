/**
 * Spill files: where a one-shot stream or a CSV goes when it outgrows its
 * memory buffer. Each spill file sits alone in a fresh directory
 * (mkdtemp-unique, so concurrent fits never collide) and holds float64 rows
 * in the host's byte order, the columns of a row side by side, so a row range
 * is one contiguous read. The owner removes it on close or on a failed
 * ingest; directories still registered when the process exits are removed
 * synchronously then, as a last resort.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kHostLittleEndian, kPieceBytes, type RowLayout } from './positionedRead.js';
import { cannotSpill } from './sourceErrors.js';

const kDirectoryPrefix = 'nlfit-spill-';
const kFileName = 'rows.f64';

const liveDirectories = new Set<string>();
let exitHookInstalled = false;

function removeLiveDirectoriesNow(): void {
  for (const directory of liveDirectories) {
    try {
      rmSync(directory, { recursive: true, force: true });
    } catch {
      // An exit handler can neither wait nor report; a directory that will not go is left behind.
    }
  }
  liveDirectories.clear();
}

function register(directory: string): void {
  if (!exitHookInstalled) {
    process.on('exit', removeLiveDirectoriesNow);
    exitHookInstalled = true;
  }
  liveDirectories.add(directory);
}

export class SpillFile {
  readonly layout: RowLayout;
  readonly #directory: string;
  readonly #fh: FileHandle;
  readonly #width: number;
  #bytesWritten = 0;
  #removing: Promise<void> | null = null;

  private constructor(directory: string, path: string, fh: FileHandle, width: number) {
    this.#directory = directory;
    this.#fh = fh;
    this.#width = width;
    this.layout = { fh, path, offset: 0, itemBytes: 8, littleEndian: kHostLittleEndian, width };
  }

  /** A new empty spill file for rows of `width` values, in a fresh directory under `parent` (default os.tmpdir()). */
  static async create(parent: string | undefined, width: number): Promise<SpillFile> {
    const base = parent ?? tmpdir();
    let directory: string;
    try {
      directory = await mkdtemp(join(base, kDirectoryPrefix));
    } catch (error) {
      throw cannotSpill(base, error);
    }
    register(directory);
    const path = join(directory, kFileName);
    try {
      return new SpillFile(directory, path, await open(path, 'wx+'), width);
    } catch (error) {
      liveDirectories.delete(directory);
      await rm(directory, { recursive: true, force: true });
      throw cannotSpill(base, error);
    }
  }

  /** Appends rows [from, from + rows) of the columns (one array per value position), interleaved. */
  async append(columns: readonly ArrayLike<number>[], from: number, rows: number): Promise<void> {
    const width = this.#width;
    const pieceRows = Math.max(1, Math.floor(kPieceBytes / (8 * width)));
    const scratch = new Float64Array(Math.min(rows, pieceRows) * width);
    for (let done = 0; done < rows; done += pieceRows) {
      const n = Math.min(rows - done, pieceRows);
      for (let j = 0; j < width; j++) {
        const column = columns[j]!;
        for (let r = 0, k = j, i = from + done; r < n; r++, k += width, i++) scratch[k] = column[i]!;
      }
      await this.#write(new Uint8Array(scratch.buffer, 0, n * width * 8));
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      try {
        const { bytesWritten } = await this.#fh.write(bytes, done, bytes.length - done, this.#bytesWritten);
        done += bytesWritten;
        this.#bytesWritten += bytesWritten;
      } catch (error) {
        throw cannotSpill(this.#directory, error);
      }
    }
  }

  /** Closes and deletes the file and its directory. Idempotent. */
  remove(): Promise<void> {
    this.#removing ??= (async () => {
      await this.#fh.close().catch(() => undefined);
      await rm(this.#directory, { recursive: true, force: true });
      liveDirectories.delete(this.#directory);
    })();
    return this.#removing;
  }
}
