/**
 * nlfit: exact, parallel, bit-reproducible nonlinear least squares for Node.js.
 *
 *   import { fit } from 'nlfit';
 *   const r = await fit({ model: 'a*exp(-b*x)+c', data: { x, y }, p0: { a: 1, b: 1, c: 0 } });
 *   console.log(r.summary());
 */
export { fit, Engine, getDefaultEngine } from './fit.js';
export type { EngineOptions, FitOptions, ModelSpec, Strategy } from './options.js';
export { FitResult, type FitTiming } from './solver/result.js';
export { ModelError } from './errors.js';
export { compileModel, freeIdentifiers, type CompiledModel } from './model/compile.js';
export { catalogModel, catalogNames, type CatalogModel } from './model/catalog.js';
export { kBlockSize } from './exec/layout.js';
