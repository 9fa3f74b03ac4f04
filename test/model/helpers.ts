// Shared by the model test suites.
import { ModelError } from '../../dist/errors.js';

/** The ModelError a call throws: its message without the caret display, and its position. */
export function failure(run: () => unknown): { message: string; position: number } {
  try {
    run();
  } catch (error) {
    if (!(error instanceof ModelError)) throw error;
    return { message: error.message.slice(0, error.message.indexOf(' at position ')), position: error.position };
  }
  throw new Error('expected a ModelError');
}
