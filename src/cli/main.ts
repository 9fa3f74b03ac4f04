#!/usr/bin/env node
/**
 * The nlfit command.
 *   nlfit fit data.csv --model "b1*(1-exp(-b2*x))" --p0 b1=500,b2=1e-4 [--json | --report]
 *   nlfit fit --config job.yaml
 *   nlfit batch y.npy --model gaussian --x x.npy [--shard i/n] [--out prefix]
 *   nlfit decide --points 1e8 --params 3 [--memory-limit 2GB]
 *   nlfit models
 *   nlfit demo [--points N] [--threads N]
 * Exit codes (exit.ts): 0 converged, 1 not converged, 2 usage error, 3 data
 * error, 130/143 interrupted by SIGINT/SIGTERM. `nlfit batch` exits 0 when
 * every curve was fitted, converged or not (its counts say which).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from './args.js';
import { commandBatch } from './batchCommand.js';
import { commandDecide } from './decideCommand.js';
import { runDemo } from './demo.js';
import { didYouMean, exitCodeFor, kExitConverged, kExitNotConverged, kExitUsage, UsageError } from './exit.js';
import { commandFit, type CommandIo, type FitContext } from './fitCommand.js';
import { kBatchHelp, kDecideHelp, kDemoHelp, kFitHelp, kMainHelp, kModelsHelp } from './help.js';
import { commandModels } from './modelsCommand.js';
import { detectCpus } from './resources.js';
import { parseInteger } from './values.js';

const kCommandHelp: Record<string, string> = { fit: kFitHelp, batch: kBatchHelp, decide: kDecideHelp, models: kModelsHelp, demo: kDemoHelp };

const io: CommandIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

async function commandDemo(argv: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs(argv, {
    points: { parse: (text, flag) => parseInteger(text, flag, 3) },
    threads: { parse: (text, flag) => parseInteger(text, flag) },
    seed: { parse: (text, flag) => parseInteger(text, flag, 0) },
    help: {},
  });
  if (values.get('help') === true) {
    io.out(kDemoHelp);
    return kExitConverged;
  }
  if (positionals.length > 0) throw new UsageError(`demo takes no arguments (got '${positionals[0]}')`);
  const converged = await runDemo(
    {
      points: (values.get('points') as number | undefined) ?? 10_000_000,
      threads: (values.get('threads') as number | undefined) ?? detectCpus().cpus,
      seed: (values.get('seed') as number | undefined) ?? 1,
    },
    io.out,
  );
  return converged ? kExitConverged : kExitNotConverged;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const kCommands = ['fit', 'batch', 'decide', 'models', 'demo', 'help'];

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const context: FitContext = { dataPaths: [] };
  try {
    switch (command) {
      case 'fit':
        return await commandFit(rest, io, context);
      case 'batch':
        return await commandBatch(rest, io, context);
      case 'decide':
        return commandDecide(rest, io);
      case 'models':
        return commandModels(rest, io);
      case 'demo':
        return await commandDemo(rest);
      case 'help':
      case '--help':
      case '-h': {
        const topic = rest[0];
        if (topic !== undefined && kCommandHelp[topic] === undefined) throw new UsageError(`no command '${topic}' (commands: ${kCommands.join(', ')})`);
        io.out(topic === undefined ? kMainHelp : kCommandHelp[topic]!);
        return kExitConverged;
      }
      case '--version':
      case '-V':
        io.out(version());
        return kExitConverged;
      case undefined:
        io.err(kMainHelp);
        return kExitUsage;
      default: {
        const hint = command.startsWith('-') ? ' (flags go after the command: nlfit fit data.csv --model ...)' : didYouMean(command, kCommands);
        throw new UsageError(`unknown command '${command}'${hint}`);
      }
    }
  } catch (error) {
    const code = exitCodeFor(error, context.dataPaths);
    // Some library messages already start with 'nlfit: '.
    const message = (error instanceof Error ? error.message : String(error)).replace(/^nlfit: /, '');
    const help = code === kExitUsage && command !== undefined && kCommandHelp[command] ? `\nRun 'nlfit ${command} --help' for the options.` : code === kExitUsage ? "\nRun 'nlfit --help' for the commands." : '';
    if (!context.silent) io.err(`nlfit: ${message}${help}`);
    return code;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
