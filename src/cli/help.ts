/** The help text of every command (`nlfit <command> --help`). */

export const kExitCodesHelp = `Exit codes:
  0    the fit converged (other commands: done)
  1    the fit did not converge (success: false in --json), or failed while running
  2    usage error: unknown flag, bad value, missing --model, a model that does not parse,
       a checkpoint --resume refuses (written for other data or options)
  3    data error: a file that cannot be read, a value that is not a number, NaN in y
  130  interrupted by SIGINT (Ctrl-C); 143 interrupted by SIGTERM (a scheduler's warning)
       With --checkpoint the fit saves its state first, and --resume continues from it.`;

export const kMainHelp = `Usage: nlfit <command> [options]

Commands:
  fit <data> --model <m>    fit a model to data in files (CSV, .npy, raw binary columns)
  batch <y.npy> --model <m> fit the model to every curve (row) of a 2-D .npy, or to one
                            shard of them (job arrays): per-curve results as .npy
  decide --points N --params P
                            how a fit of that size would run here, and why
  models                    the catalog models: formulas and what each parameter means
  demo                      fit a generated 10-million-point problem (what npm start runs)
  help [command]            this text, or a command's

Options: --help (also after a command), --version

${kExitCodesHelp}

Threads default to the CPUs this process may use (affinity, cgroup CPU quota,
SLURM_CPUS_PER_TASK: the smallest), memory to the container's limit or Slurm's
--mem / --mem-per-cpu. See docs/hpc.md for batch jobs.

Examples:
  nlfit fit misra1a.csv --model "b1*(1-exp(-b2*x))" --p0 b1=500,b2=1e-4
  nlfit fit scan.csv.gz --model gaussian --report --plot scan.svg
  nlfit fit --config job.yaml --json > result.json
  nlfit batch spectra.npy --model gaussian --x energy.npy --out results/spectra
  nlfit decide --points 1e9 --params 3 --memory-limit 8GB

Run 'nlfit <command> --help' for a command's options.`;

export const kFitHelp = `Usage: nlfit fit <data> --model <expr|catalog name> [options]
       nlfit fit --config job.yaml [options]

Data (positional):
  data.csv, data.csv.gz     a table with a header row; 'y' is the response, 'sigma'
                            (optional) its standard deviations, other columns variables
  table.npy --columns x,y   a 2-D .npy (float64 or float32): its columns' names, in order
  x=x.npy y=y.npy           one 1-D .npy per column, named
  x=x.bin y=y.bin:float32   raw little-endian columns (float64 unless :float32)
  --columns x=time,y=signal name the fit's columns after the data's (renames)

Model:
  --model <m>               an expression ("a*exp(-b*x)+c") or a catalog model
                            (see 'nlfit models': exponential, gaussian, poly3, ...)
  --p0 <list>               starting values: a=5,b=1,c=0 (or 5,1,0 in order of first
                            appearance); optional for catalog models (guessed)
  --bounds <list>           b=0:inf,c=-1:1 (inf, -inf or empty for no bound)
  --fixed <names>           parameters held at their --p0 value: c or c,d
  --loss <name>             linear (least squares), soft_l1, huber, cauchy, arctan
  --f-scale <x>             residual scale of a robust loss (default 1)
  --absolute-sigma          do not rescale the covariance by the reduced chi-square
  --multistart <n>          n starts (p0 and n-1 sampled), the best kept

Solver:
  --ftol <x>, --xtol <x>    relative tolerances (default 1e-12; by data size with a
                            workflow or goal)
  --gtol <x>                orthogonality tolerance (default 0)
  --max-fev <n>             most passes over the data (default 100*(params+1))
  --workflow <name>         auto, standard, chunked, streaming, hpc, quality, fast,
                            auto_global, large_robust
  --goal <name>             fast, robust, global, quality, memory_efficient
  --strategy <name>         auto, standard, chunked, streaming (never changes the answer)

Resources:
  --threads <n>             worker threads (default: the CPUs this process may use)
  --memory-limit <size>     memory the fit may use: 512MB, 2GB, 1.5G (a plain number
                            is MB; default: the container's limit or Slurm's --mem)
  --mpi                     one fit across the ranks of an MPI job: run the same
                            command under mpirun -n N or srun; each rank reads its
                            slice of the files and uses its own threads; rank 0
                            prints (the same bits as one process; docs/hpc.md)

Checkpoints:
  --checkpoint <path>       save the solver's state to this file (every
                            --checkpoint-every iterations, at a limit, on SIGINT or
                            SIGTERM); a folder (existing, or ending in /) holds
                            <data file name>.ckpt, one per data file
  --checkpoint-every <n>    iterations between checkpoints (default 10)
  --resume                  continue from the checkpoint when there is one (it must
                            be for the same data and options)

Output (the result on stdout; progress and notices on stderr):
  (default)                 a short summary: status, parameters with 95% intervals
  --report                  the full report (statistics, correlations, intervals,
                            strategy and why, time); on stderr with --json
  --json                    the result as JSON, with the effective configuration
                            ('config', itself a valid job file)
  --residuals <file>        every point's variables, y, fitted value and residual as
                            .csv or .csv.gz
  --plot <file.svg>         data, fitted curve and residuals (one-variable models)
  --progress                progress lines on stderr even when it is not a terminal
  --quiet                   no progress and no notices on stderr

Job files:
  --config <job.json|job.yaml>
                            every flag as a key in camelCase (maxFev, memoryLimit,
                            fScale; kebab-case works too), 'data' for the data
                            arguments; relative paths are relative to the job file.
                            Flags on the command line win (--json=false turns a
                            switch off).

${kExitCodesHelp}

Examples:
  nlfit fit misra1a.csv --model "b1*(1-exp(-b2*x))" --p0 b1=500,b2=1e-4
  nlfit fit peaks.csv --columns x=energy,y=counts --model gaussian --report
  nlfit fit table.npy --columns x,y,sigma --model exponential --json > fit.json
  nlfit fit t=t.bin y=v.bin:float32 --model "a*sin(w*t+p)" --p0 a=1,w=6,p=0 --bounds a=0:inf
  nlfit fit big.csv.gz --model logistic --memory-limit 2GB --residuals res.csv.gz --plot fit.svg
  nlfit fit --config job.yaml --threads 8 --checkpoint $SCRATCH/ckpt --resume
  mpirun -n 4 nlfit fit x=x.npy y=y.npy --model exponential --mpi --json > fit.json

  # job.yaml
  data: runs/042.csv
  model: a*exp(-b*x)+c
  p0: { a: 5, b: 1, c: 0 }
  bounds: { b: [0, null] }
  memoryLimit: 2GB`;

export const kBatchHelp = `Usage: nlfit batch <y.npy> --model <expr|catalog name> [options]

Fits the model to every curve of y.npy, a 2-D array of M curves x n points
(one curve per row; float64 or float32, C or Fortran order), each curve on
its own, in native code on all threads (the library's fitMany).

Data:
  <y.npy>                   the curves: shape (M, n)
  --x <x.npy>               the variable x: shape (n,), shared by every curve, or
                            (M, n), one row per curve (default: 0, 1, ..., n-1)
  --x x1=x1.npy,x2=x2.npy   several variables, each (n,) or (M, n): a 5x5 image has
                            n = 25 points and x1, x2 the pixel coordinates
  --sigma <sigma.npy>       standard deviations of y: (n,) or (M, n)

Model:
  --model <m>               an expression ("a*exp(-b*x)+c") or a catalog model
                            (see 'nlfit models'); every curve is fitted by it
  --p0 <list>               starting values shared by every curve: a=5,b=1,c=0 (or 5,1,0
                            in --params order); optional for catalog models
                            (guessed per curve)
  --p0 <p0.npy>             starting values per curve: shape (M, p), columns in
                            --params order (or (p,), shared)
  --params <names>          the parameters' order: a,b,c (default: the catalog's,
                            or order of first appearance in the expression)
  --bounds <list>           b=0:inf,c=-1:1, shared by every curve
  --estimator <name>        lsq (least squares, default) or poisson (counts: maximum
                            likelihood; chi2 is then the deviance)
  --loss <name>             linear, soft_l1, huber, cauchy, arctan
  --f-scale <x>             residual scale of a robust loss (default 1)
  --absolute-sigma          do not rescale the standard errors by the reduced chi-square

Solver (per curve):
  --ftol <x>, --xtol <x>    relative tolerances (default 1e-10)
  --gtol <x>                orthogonality tolerance (default 0)
  --max-fev <n>             most model evaluations per curve (default 100*(params+1))
  --threads <n>             worker threads (default: the CPUs this process may use)

Job arrays:
  --shard <i/n>             fit only part i of n (i from 0): curves floor(i*M/n) up to
                            floor((i+1)*M/n) - 1, reading only those rows; the outputs
                            cover that range and say which it is
                            (--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)
  --mpi                     under mpirun or srun: rank i of n fits the curves of
                            --shard i/n, and rank 0 gathers every curve's result,
                            in order, and writes them as one run (not with --shard)

Output (results on stdout or in files; progress and notices on stderr):
  (default)                 a summary: curves, fits per second, curves per status,
                            the fraction converged
  --json                    the summary as JSON: counts per status, the range of curves
                            (start inclusive, end exclusive), timing; with no --out and
                            at most 1000 curves also params, stderr, chi2, iterations,
                            nfev and status per curve
  --out <prefix>            writes <prefix>.params.npy and <prefix>.stderr.npy (m x p
                            float64), <prefix>.chi2.npy (float64), <prefix>.iterations.npy
                            and <prefix>.nfev.npy (int32), <prefix>.status.npy (uint8, an
                            index into statusNames) and, last, <prefix>.json (the summary:
                            parameter and status names, counts, range, timing); each
                            through a temporary file renamed into place
  --progress                progress lines on stderr even when it is not a terminal
  --quiet                   no progress and no notices on stderr

Exit codes:
  0    every curve of the range was fitted, whether or not it converged (see the
       counts; a curve with NaN in y, or that hit --max-fev, gets its own status)
  1    the batch failed while fitting
  2    usage error: unknown flag, bad value, missing --model or --p0, a model that
       does not parse, an unknown parameter, a bad --shard
  3    data error: a file that cannot be read or is not a float .npy, shapes of y,
       x, sigma and p0 that do not agree, a starting value that is not finite
  130  interrupted by SIGINT; 143 interrupted by SIGTERM (nothing is written)

Examples:
  nlfit batch spectra.npy --model gaussian --x energy.npy
  nlfit batch decays.npy --model "a*exp(-t/tau)+c" --x t=t.npy --p0 a=1,tau=2,c=0 --out fits/decays
  nlfit batch pixels.npy --model "a*exp(-((x1-u)^2+(x2-v)^2)/(2*s^2))+c" \\
    --x x1=x1.npy,x2=x2.npy --p0 p0.npy --params a,u,v,s,c --json > pixels.json
  nlfit batch y.npy --model gaussian --shard 3/16 --out results/part-3`;

export const kDecideHelp = `Usage: nlfit decide --points N --params P [options]

Prints how a fit of that size would run on this machine (in memory on the
calling thread, on the worker pool, or streamed from its file) and why, with
the memory arithmetic. Nothing is fitted.

  --points <n>              data points (1e8 is fine)
  --params <n>              fitted parameters
  --variables <n>           variable columns the model reads (default 1)
  --weighted                a sigma column is read too
  --data <where>            file (default), memory or stream
  --workflow <name>         as for nlfit fit (default auto)
  --memory-limit <size>     512MB, 2GB, 1.5G (default: as nlfit fit detects it)
  --threads <n>             worker threads (default: the CPUs this process may use)
  --json                    the decision as JSON

Exit codes: 0 done, 2 usage error.

Examples:
  nlfit decide --points 1e8 --params 3 --memory-limit 160MB
  nlfit decide --points 5e6 --params 5 --variables 2 --data memory --json`;

export const kModelsHelp = `Usage: nlfit models [--json]

Lists the catalog models: name, expression, what it describes and what each
parameter means. Give the name to --model; p0 is then optional (guessed from
the data).

Examples:
  nlfit models
  nlfit fit scan.csv --model gaussian --p0 mu=3.1`;

export const kDemoHelp = `Usage: nlfit demo [--points N] [--threads N] [--seed N]

Generates y = 5*exp(-1.3*x) + 0.7 + noise on [0, 5] and fits a*exp(-b*x)+c
on all cores, then prints the report, the time and the throughput (what
'npm start' runs).

  --points <n>    data points (default 10000000)
  --threads <n>   worker threads (default: the CPUs this process may use)
  --seed <n>      noise seed (default 1)

Examples:
  nlfit demo
  nlfit demo --points 1e6 --threads 2`;
