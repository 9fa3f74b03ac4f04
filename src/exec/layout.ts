/**
 * Numbers shared with native/kernel/layout.hpp (and, from ./cancel.js, with
 * cancel.hpp). The addon reports its own values; checkLayout() refuses to run
 * against an addon built from other sources, since a different block size
 * would change results and a different cancel layout would cancel nothing.
 */
import type { NativeAddon } from '../native.js';
import { kCancelBytes, kCancelDeadlineByte, kCancelFlagIndex } from './cancel.js';

export const kBlockSize = 512;
export const kLayoutVersion = 1;
export const kBytecodeVersion = 2;

export function checkLayout(addon: NativeAddon): void {
  if (addon.blockSize !== kBlockSize || addon.layoutVersion !== kLayoutVersion || addon.bytecodeVersion !== kBytecodeVersion) {
    throw new Error(
      `nlfit: the native addon (block size ${addon.blockSize}, layout ${addon.layoutVersion}, bytecode ${addon.bytecodeVersion}) ` +
        `does not match this version of the library (block size ${kBlockSize}, layout ${kLayoutVersion}, bytecode ${kBytecodeVersion}); rebuild it with "npm run build:native".`,
    );
  }
  if (addon.cancelFlagIndex !== kCancelFlagIndex || addon.cancelDeadlineByte !== kCancelDeadlineByte || addon.cancelBytes !== kCancelBytes) {
    throw new Error('nlfit: the native addon was built for another cancel buffer layout (native/kernel/cancel.hpp); rebuild it with "npm run build:native".');
  }
}

export function blockCount(nPoints: number): number {
  return Math.ceil(nPoints / kBlockSize);
}
