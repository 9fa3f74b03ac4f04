/** `nlfit models`: the catalog, with formulas and what each parameter means. */
import { catalogModel, catalogNames, kMaxPolynomialDegree } from '../model/catalog.js';
import { parseArgs } from './args.js';
import { UsageError } from './exit.js';
import type { CommandIo } from './fitCommand.js';
import { kModelsHelp } from './help.js';
import { toJson } from './report.js';

interface ModelEntry {
  name: string;
  expression: string;
  description: string;
  params: Array<{ name: string; meaning: string }>;
}

function entries(): ModelEntry[] {
  return catalogNames().map((name): ModelEntry => {
    if (name === 'polynomial') {
      return {
        name: 'polyN',
        expression: 'c0+c1*x+...+cN*x^N',
        description: `polynomial of degree N = 1..${kMaxPolynomialDegree} (poly1, poly2, ...; 'polynomial' with a degree in the library)`,
        params: [
          { name: 'c0', meaning: 'constant term' },
          { name: 'cK', meaning: 'coefficient of x^K' },
        ],
      };
    }
    const model = catalogModel(name);
    return {
      name,
      expression: model.expression,
      description: model.description,
      params: model.params.map((param) => ({ name: param, meaning: model.paramDoc[param] ?? '' })),
    };
  });
}

export function commandModels(argv: readonly string[], io: CommandIo): number {
  const { positionals, values } = parseArgs(argv, { json: {}, help: {} });
  if (values.get('help') === true) {
    io.out(kModelsHelp);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`models takes no arguments (got '${positionals[0]}')`);
  const models = entries();
  if (values.get('json') === true) {
    io.out(toJson(models));
    return 0;
  }
  const lines: string[] = [];
  for (const model of models) {
    lines.push(`${model.name.padEnd(20)}${model.expression}`, `    ${model.description}`);
    const width = Math.max(...model.params.map((p) => p.name.length));
    for (const param of model.params) lines.push(`    ${param.name.padEnd(width)}  ${param.meaning}`);
    lines.push('');
  }
  lines.push("Use a name with --model; p0 is optional (guessed from the data): nlfit fit data.csv --model gaussian");
  io.out(lines.join('\n'));
  return 0;
}
