/**
 * Byte counts for people. The units are powers of 1024, as memoryLimitMb's
 * megabyte is: 1 KB = 1024 B, 1 MB = 1024 KB, 1 GB = 1024 MB.
 *
 *   formatBytes(1536)           // '1.5 KB'
 *   formatBytes(160 * 2 ** 20)  // '160.0 MB'
 */

export const kMiB = 1024 * 1024;

const kUnits = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'] as const;

/** `n` bytes with one decimal in the largest unit that keeps the number at least 1 (whole bytes below 1 KB). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} B`;
  const sign = n < 0 ? '-' : '';
  let value = Math.abs(n);
  if (Math.round(value) < 1024) return `${sign}${Math.round(value)} B`;
  let unit = 0;
  // Step up while the value would print as 1024.0 or more of the current unit.
  while (unit < kUnits.length - 1 && (unit === 0 || Number(value.toFixed(1)) >= 1024)) {
    value /= 1024;
    unit++;
  }
  return `${sign}${value.toFixed(1)} ${kUnits[unit]}`;
}
