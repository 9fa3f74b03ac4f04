// The nlfit command: fit from a CSV file, JSON output, usage errors, demo.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'nlfit-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function nlfit(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
}

const misra = JSON.parse(
  readFileSync(fileURLToPath(new URL('./fixtures/nist/Misra1a.json', import.meta.url)), 'utf8'),
) as { data: { x: number[]; y: number[] }; certified_values: number[] };
const csv = join(dir, 'misra1a.csv');
writeFileSync(csv, `x,y\n${misra.data.x.map((x, i) => `${x},${misra.data.y[i]}`).join('\n')}\n`);

describe('nlfit fit', () => {
  it('fits a CSV file and prints JSON', () => {
    const run = nlfit('fit', csv, '--model', 'b1*(1-exp(-b2*x))', '--p0', 'b1=500,b2=1e-4', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as { success: boolean; params: Record<string, number>; nPoints: number };
    expect(result.success).toBe(true);
    expect(result.nPoints).toBe(14);
    expect(result.params.b1).toBeCloseTo(misra.certified_values[0]!, 6);
    expect(result.params.b2).toBeCloseTo(misra.certified_values[1]!, 12);
  });

  it('prints a report by default', () => {
    const run = nlfit('fit', csv, '--model', 'b1*(1-exp(-b2*x))', '--p0', '500,1e-4');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/\[\[Variables\]\]/);
    expect(run.stdout).toMatch(/b1\s+=\s+238\.942/);
  });

  it('rejects an unknown flag with a suggestion and exit code 2', () => {
    const run = nlfit('fit', csv, '--model', 'b1*x', '--p00', 'b1=1');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unknown flag --p00 \(did you mean --p0\?\)/);
  });

  it('rejects a bad model with exit code 2 and the position', () => {
    const run = nlfit('fit', csv, '--model', 'b1*exp(', '--p0', 'b1=1');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unexpected end/);
  });

  it('rejects a bad number with exit code 2', () => {
    const run = nlfit('fit', csv, '--model', 'b1*x', '--p0', 'b1=abc');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/'abc' is not a number/);
  });

  it('reports a CSV value that is not a number, with its line', () => {
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'x,y\n1,2\n2,oops\n');
    const run = nlfit('fit', bad, '--model', 'b1*x', '--p0', 'b1=1');
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/bad\.csv:3: 'oops' in column 'y' is not a number/);
  });
});

describe('nlfit demo and help', () => {
  it('runs the demo on a smaller problem', () => {
    const run = nlfit('demo', '--points', '200000');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/200,000 points/);
    expect(run.stdout).toMatch(/status\s+= \w+ \(converged\)/);
    expect(run.stdout).toMatch(/fit time: \d+ ms/);
  });

  it('prints help and exits 2 on an unknown command', () => {
    expect(nlfit('--help').stdout).toMatch(/Usage: nlfit <command>/);
    expect(nlfit('fit', '--help').stdout).toMatch(/--p0/);
    const run = nlfit('frobnicate');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
