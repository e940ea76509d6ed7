// Switchyard as separate processes for the scale-out tests: the CLI started as a child (clustered
// or not), its JSON log lines collected and awaited, and requests on fresh connections so that
// consecutive requests may land on different workers.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string; pid?: number; role?: string };

export interface RunningProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Every JSON log line so far (the primary's and its workers': they share stdout). */
  readonly lines: LogLine[];
  /** The first line from index `from` on that `match` accepts; waits for it when not there yet. */
  waitForLine(match: (line: LogLine) => boolean, from?: number): Promise<LogLine>;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Sends SIGTERM (unless gone already) and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `switchyard <args>` and resolves once the log line named `readyMsg` appears ('cluster
 * listening' for --workers, 'listening' otherwise), with the port it gives.
 */
export async function startProcess(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; readyMsg?: string } = {}): Promise<RunningProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, env: { PATH: process.env.PATH, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const seen = new EventEmitter();
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ msg: text });
    }
    seen.emit('line');
  });
  // 'close', not 'exit': at 'exit' the last lines may still be in the pipe; 'close' comes after them.
  let closed = false;
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => { closed = true; seen.emit('line'); resolve(code); }));
  const waitForLine = (match: (line: LogLine) => boolean, from = 0) => new Promise<LogLine>((resolve, reject) => {
    const check = () => {
      const found = lines.slice(from).find(match);
      if (found) {
        seen.off('line', check);
        resolve(found);
      } else if (closed) {
        seen.off('line', check);
        reject(new Error(`switchyard exited (${child.exitCode ?? child.signalCode}) before the awaited log line; stderr: ${stderr}`));
      }
    };
    seen.on('line', check);
    check();
  });
  const readyMsg = options.readyMsg ?? (args.includes('--workers') ? 'cluster listening' : 'listening');
  const ready = await waitForLine((line) => line.msg === readyMsg);
  const port = ready.port as number;
  return {
    child, port, url: `http://127.0.0.1:${port}`, lines, waitForLine, exited,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Writes the config (YAML) and any extra files into a fresh temp dir; returns the config's path. */
export function writeConfig(config: object, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-scale-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const file = join(dir, 'switchyard.yaml');
  writeFileSync(file, YAML.stringify(config));
  return file;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a connection of its own (no keep-alive), so the cluster may pick any worker. */
export function request(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Asks until answers from `workers` different processes (told apart by `x-worker-pid`) came back,
 * at most `limit` requests; returns every answer.
 */
export async function answersFromWorkers(port: number, path: string, workers: number, limit = 100): Promise<Answer[]> {
  const answers: Answer[] = [];
  const pids = new Set<string>();
  for (let i = 0; i < limit && pids.size < workers; i++) {
    const answer = await request(port, path);
    answers.push(answer);
    if (answer.headers['x-worker-pid']) pids.add(String(answer.headers['x-worker-pid']));
  }
  return answers;
}

export function pidsOf(answers: Answer[]): Set<string> {
  return new Set(answers.map((a) => String(a.headers['x-worker-pid'])));
}
