// A Git server on loopback for GitOps tests: Git's own smart-HTTP backend (`git
// http-backend`, run as CGI per request) behind a small HTTP server on 127.0.0.1, so
// that Flux's source-controller clones over HTTP exactly as from a real forge, and a
// helper to commit and push from a test.
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface GitServer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Creates an empty bare repository `name`.git and returns its clone URL. */
  createRepository(name: string): Promise<GitRepository>;
  close(): Promise<void>;
}

export interface GitRepository {
  url: string;
  /** A working clone in a temp dir, with commit and push helpers. */
  clone(options?: { signal?: AbortSignal }): Promise<GitWorkTree>;
}

export interface GitWorkTree {
  dir: string;
  /** Runs git in the work tree (no global or system config); resolves to stdout. */
  git(args: string[], options?: { signal?: AbortSignal }): Promise<string>;
  write(file: string, content: string): Promise<void>;
  remove(file: string): Promise<void>;
  /** Stages everything, commits, pushes to the server's default branch; resolves to the commit SHA. */
  commitAndPush(message: string, options?: { signal?: AbortSignal }): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_BRANCH = 'main';

/** git with the test's identity and no user, system or credential configuration. */
function gitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: tmpdir(),
    LANG: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'envseal test',
    GIT_AUTHOR_EMAIL: 'test@envseal.invalid',
    GIT_COMMITTER_NAME: 'envseal test',
    GIT_COMMITTER_EMAIL: 'test@envseal.invalid',
  };
}

export function runGit(args: string[], options: { cwd: string; signal?: AbortSignal; env?: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      { cwd: options.cwd, env: { ...gitEnv(), ...options.env }, maxBuffer: 64 << 20, ...(options.signal ? { signal: options.signal } : {}) },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`git ${args.join(' ')} failed: ${stderr.trim() || error.message}`, { cause: error }));
        else resolve(stdout);
      },
    );
  });
}

function gitExecPath(): Promise<string> {
  return runGit(['--exec-path'], { cwd: tmpdir() }).then((out) => out.trim());
}

/**
 * Serves one request through `git http-backend` (CGI): the request body on its stdin,
 * its CGI header block turned into the HTTP status and headers, the rest streamed.
 */
function serveCgi(backend: string, root: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const env: NodeJS.ProcessEnv = {
    ...gitEnv(),
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    // Pushes over HTTP are refused unless enabled (or the user is authenticated).
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.receivepack',
    GIT_CONFIG_VALUE_0: 'true',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
    ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
    ...(typeof req.headers['git-protocol'] === 'string' ? { GIT_PROTOCOL: req.headers['git-protocol'] } : {}),
  };
  const child = spawn(backend, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  req.pipe(child.stdin);
  child.stdin.on('error', () => {}); // the backend may answer before reading everything
  let head = Buffer.alloc(0);
  let headersSent = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersSent) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const crlf = head.indexOf('\r\n\r\n');
    const lf = head.indexOf('\n\n');
    const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf >= 0 ? lf + 2 : -1;
    if (end < 0) return;
    let status = 200;
    for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    headersSent = true;
    res.write(head.subarray(end));
  });
  child.on('close', (code) => {
    if (!headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`git http-backend exited with ${code}: ${stderr}`);
    } else res.end();
  });
}

/**
 * Removes `dir` when this process exits, however it exits (SIGKILL too): a detached sh
 * holds a pipe from this process and removes the dir when the pipe closes. release()
 * closes the pipe now (after the caller removed the dir itself, or to remove it).
 */
export function removeWhenProcessExits(dir: string): { release(): void } {
  const guard = spawn('sh', ['-c', 'cat >/dev/null; rm -rf -- "$1"', 'envseal-tmp-guard', dir], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  guard.unref();
  (guard.stdin as unknown as Socket).unref();
  return { release: () => guard.stdin?.end() };
}

/** Starts the server on a free port of 127.0.0.1, serving bare repositories under a temp dir. */
export async function startGitServer(): Promise<GitServer> {
  const backend = path.join(await gitExecPath(), 'git-http-backend');
  const root = await mkdtemp(path.join(tmpdir(), 'envseal-git-'));
  const rootGuard = removeWhenProcessExits(root);
  const server = createServer((req, res) => serveCgi(backend, root, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clones: GitWorkTree[] = [];
  return {
    url,
    async createRepository(name) {
      if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`repository name ${JSON.stringify(name)}: use lowercase letters, digits and dashes`);
      const bare = path.join(root, `${name}.git`);
      await mkdir(bare);
      await runGit(['init', '--quiet', '--bare', `--initial-branch=${DEFAULT_BRANCH}`], { cwd: bare });
      const repoUrl = `${url}/${name}.git`;
      return {
        url: repoUrl,
        async clone(options = {}) {
          const tree = await cloneWorkTree(repoUrl, options.signal);
          clones.push(tree);
          return tree;
        },
      };
    },
    async close() {
      await Promise.all(clones.map((c) => c.close()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(root, { recursive: true, force: true });
      rootGuard.release();
    },
  };
}

async function cloneWorkTree(repoUrl: string, signal: AbortSignal | undefined): Promise<GitWorkTree> {
  const parent = await mkdtemp(path.join(tmpdir(), 'envseal-clone-'));
  const parentGuard = removeWhenProcessExits(parent);
  const dir = path.join(parent, 'repo');
  const withSignal = (s: AbortSignal | undefined) => (s ? { signal: s } : {});
  await runGit(['clone', '--quiet', repoUrl, dir], { cwd: parent, ...withSignal(signal) });
  // An empty repository clones with no branch checked out yet.
  await runGit(['checkout', '--quiet', '-B', DEFAULT_BRANCH], { cwd: dir });
  const resolveInside = (file: string) => {
    const full = path.resolve(dir, file);
    if (!full.startsWith(dir + path.sep)) throw new Error(`${file} is outside the work tree`);
    return full;
  };
  return {
    dir,
    git: (args, options = {}) => runGit(args, { cwd: dir, ...withSignal(options.signal) }),
    async write(file, content) {
      const full = resolveInside(file);
      await mkdir(path.dirname(full), { recursive: true });
      await writeFile(full, content);
    },
    async remove(file) {
      await unlink(resolveInside(file));
    },
    async commitAndPush(message, options = {}) {
      await runGit(['add', '--all'], { cwd: dir });
      await runGit(['commit', '--quiet', '-m', message], { cwd: dir });
      await runGit(['push', '--quiet', 'origin', `HEAD:refs/heads/${DEFAULT_BRANCH}`], { cwd: dir, ...withSignal(options.signal) });
      return (await runGit(['rev-parse', 'HEAD'], { cwd: dir })).trim();
    },
    async close() {
      await rm(parent, { recursive: true, force: true });
      parentGuard.release();
    },
  };
}
