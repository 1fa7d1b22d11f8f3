import type { RandomSource } from '../envelope/random.ts';
import type { CollectGarbage } from '../files/sinks.ts';
import type { ProviderConfig, ProviderRegistry } from '../providers/registry.ts';
import type { TemporaryFiles } from './files.ts';

export interface Writer {
  write(text: string | Uint8Array): unknown;
}

export interface EditorRequest {
  /** The command from $VISUAL or $EDITOR (may hold arguments, e.g. "code --wait"). */
  editor: string;
  /** Absolute path of the file to edit. */
  file: string;
  signal?: AbortSignal;
}

/** Everything the CLI touches besides the file system: injected, so tests run in memory. */
export interface CliIo {
  /** Reads all of standard input; may refuse more than `maxBytes` (exit 3) without reading it all. */
  stdin: (options?: { maxBytes?: number }) => Promise<Buffer>;
  /** Standard input as a stream, for commands that process input of any size in constant memory. */
  stdinStream?: () => AsyncIterable<Uint8Array>;
  stdout: Writer;
  stderr: Writer;
  /** The environment, as a plain record (main passes process.env). */
  env: Readonly<Record<string, string | undefined>>;
  /** Relative paths resolve against it. */
  cwd: string;
  now: () => Date;
  /** Defaults to the system CSPRNG; tests inject a seeded source. */
  random?: RandomSource;
  stdinIsTTY?: boolean;
  stdoutIsTTY?: boolean;
  /** Runs the editor and resolves to its exit status (`envseal edit`). */
  spawnEditor?: (request: EditorRequest) => Promise<number>;
  /** Aborted on SIGINT by main. */
  signal?: AbortSignal;
  /** "envseal", or "kubectl envseal" when run as a kubectl plugin. */
  programName?: string;
  version?: string;
  /** Temporary files of this run, removed by main on an abrupt exit. */
  temporaries?: TemporaryFiles;
  /** A young-generation collection, for the file pumps (main: src/cli/gc.ts). */
  collectGarbage?: CollectGarbage;
  /** Builds the provider registry from the parsed configuration (tests may substitute providers). */
  createProviders?: (config: ProviderConfig) => ProviderRegistry;
}
