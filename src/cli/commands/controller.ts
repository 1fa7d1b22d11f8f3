import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { parseTenantPolicy, TenantPolicyError } from '../../api/policy.ts';
import { flag, HELP_OPTION, stringList, stringOption } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CliError, EXIT, usageError } from '../errors.ts';
import { type ProviderConfig, providerOptions, resolveProviderConfig } from '../../providers/registry.ts';
import { type ControllerConfig, DEFAULT_CONTROLLER_CONFIG, runController } from '../../controller/manager.ts';

const OPTIONS = {
  kubeconfig: { type: 'string', value: 'FILE', help: 'kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)' },
  namespaces: { type: 'string', multiple: true, value: 'NS[,NS]', help: 'watch only these namespaces (namespaced mode; default: all; env ENVSEAL_NAMESPACES)' },
  'controller-namespace': {
    type: 'string',
    value: 'NS',
    help: 'namespace of the age identity, the lease and the published recipient (env POD_NAMESPACE; default envseal-system)',
  },
  workers: { type: 'string', value: 'N', help: 'concurrent reconciles (default 4)' },
  'metrics-address': { type: 'string', value: 'HOST:PORT', help: "serve /metrics, /healthz, /readyz here (default 0.0.0.0:8080; '' to disable)" },
  resync: { type: 'string', value: 'DURATION', help: 'look at every EnvelopeSecret this often (default 10m; makes no KMS call when in sync)' },
  'dek-cache-size': { type: 'string', value: 'N', help: 'unwrapped data keys kept in memory (default 1024; 0 disables)' },
  'dek-cache-ttl': { type: 'string', value: 'DURATION', help: 'how long a data key stays cached (default 5m)' },
  'no-age': { type: 'boolean', help: 'do not create or use the cluster age identity' },
  'age-secret': { type: 'string', value: 'NAME', help: 'Secret holding the cluster age identity (default envseal-age-identity)' },
  'age-configmap': { type: 'string', value: 'NAME', help: 'ConfigMap publishing the age recipient (default envseal-age-recipient)' },
  ...providerOptions('controller', false),
  'unwrap-budget': { type: 'string', value: 'RATE/BURST', help: "key-provider calls per namespace: per second and burst (default 50/1000; '0' disables)" },
  'restart-window': {
    type: 'string',
    value: 'DURATION',
    help: "restart each workload in restartWorkloads at most once per window, for all its Secrets changed within it (default 10s; '0' restarts at each Secret written)",
  },
  'no-leader-elect': { type: 'boolean', help: 'run without leader election (one replica only)' },
  'lease-name': { type: 'string', value: 'NAME', help: 'Lease used for leader election (default envseal-controller)' },
  'lease-duration': { type: 'string', value: 'DURATION', help: 'leader lease duration (default 15s)' },
  'renew-deadline': { type: 'string', value: 'DURATION', help: 'how long the leader retries renewing before it steps down (default 10s)' },
  'retry-period': { type: 'string', value: 'DURATION', help: 'lease retry period (default 2s)' },
  identity: { type: 'string', value: 'NAME', help: 'this replica in the lease (env POD_NAME; default the host name and a random suffix)' },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace, debug, info, warn, error (env ENVSEAL_LOG_LEVEL; default info)' },
  'allowed-secret-types': {
    type: 'string',
    multiple: true,
    value: 'NS=TYPE[,TYPE]',
    help: 'Secret types NS may ask for besides Opaque, tls, dockerconfigjson, dockercfg, basic-auth, ssh-auth; NS * for every namespace; repeatable (env ENVSEAL_ALLOWED_SECRET_TYPES, entries separated by ;)',
  },
  ...HELP_OPTION,
} as const;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, option: string): number {
  const match = DURATION.exec(text.trim());
  if (!match) throw usageError(`--${option} must be a duration such as 500ms, 30s, 5m or 1h`);
  return Math.round(Number(match[1]) * UNIT_MS[match[2]!]!);
}

function parseCount(text: string, option: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min) throw usageError(`--${option} must be a whole number of at least ${min}`);
  return Number(text);
}

/** Flags and environment, parsed once into the controller's configuration. */
export function controllerConfigFrom(ctx: Pick<CommandContext, 'values' | 'io'>): ControllerConfig {
  const { values } = ctx;
  const env = ctx.io.env;
  const d = DEFAULT_CONTROLLER_CONFIG;
  const str = (name: string) => stringOption(values, name);
  const namespaces = [
    ...stringList(values, 'namespaces'),
    ...(stringList(values, 'namespaces').length === 0 && env.ENVSEAL_NAMESPACES ? [env.ENVSEAL_NAMESPACES] : []),
  ]
    .flatMap((list) => list.split(','))
    .map((ns) => ns.trim())
    .filter((ns) => ns !== '');
  const leaseDurationMs = str('lease-duration') ? parseDuration(str('lease-duration')!, 'lease-duration') : d.leaderElection.leaseDurationMs;
  const renewDeadlineMs = str('renew-deadline') ? parseDuration(str('renew-deadline')!, 'renew-deadline') : d.leaderElection.renewDeadlineMs;
  if (renewDeadlineMs >= leaseDurationMs) throw usageError('--renew-deadline must be shorter than --lease-duration');
  return {
    kubeconfig: str('kubeconfig'),
    namespaces: [...new Set(namespaces)],
    namespace: str('controller-namespace') ?? env.POD_NAMESPACE ?? d.namespace,
    workers: str('workers') ? parseCount(str('workers')!, 'workers', 1) : d.workers,
    metricsAddress: str('metrics-address') ?? d.metricsAddress,
    resyncMs: str('resync') ? parseDuration(str('resync')!, 'resync') : d.resyncMs,
    dataKeyCache: {
      maxEntries: str('dek-cache-size') ? parseCount(str('dek-cache-size')!, 'dek-cache-size', 0) : d.dataKeyCache.maxEntries,
      ttlMs: str('dek-cache-ttl') ? parseDuration(str('dek-cache-ttl')!, 'dek-cache-ttl') : d.dataKeyCache.ttlMs,
    },
    age: {
      enabled: !flag(values, 'no-age'),
      secretName: str('age-secret') ?? d.age.secretName,
      configMapName: str('age-configmap') ?? d.age.configMapName,
    },
    providers: {},
    leaderElection: {
      enabled: !flag(values, 'no-leader-elect'),
      leaseName: str('lease-name') ?? d.leaderElection.leaseName,
      leaseDurationMs,
      renewDeadlineMs,
      retryPeriodMs: str('retry-period') ? parseDuration(str('retry-period')!, 'retry-period') : d.leaderElection.retryPeriodMs,
    },
    ...((str('identity') ?? env.POD_NAME) ? { identity: (str('identity') ?? env.POD_NAME)! } : {}),
    shutdownGraceMs: d.shutdownGraceMs,
    unwrapBudget: str('unwrap-budget') ? parseBudget(str('unwrap-budget')!) : d.unwrapBudget,
    restartWindowMs: str('restart-window') ? parseWindow(str('restart-window')!) : d.restartWindowMs,
    tenantPolicy: tenantPolicyFrom(stringList(values, 'allowed-secret-types'), env.ENVSEAL_ALLOWED_SECRET_TYPES),
  };
}

/**
 * The key providers' options from their flags and the environment (in-cluster: IRSA,
 * Vault's Kubernetes auth...). No identity files: the cluster identity is a Secret.
 */
export async function controllerProvidersFrom(ctx: Pick<CommandContext, 'values' | 'io'>, signal?: AbortSignal): Promise<ProviderConfig> {
  return resolveProviderConfig({
    values: ctx.values,
    env: ctx.io.env,
    role: 'controller',
    unwrap: true,
    warn: (message) => void ctx.io.stderr.write(`warning: ${message}\n`),
    readFile: async (file, options) => {
      const bytes = await readFile(file);
      if (bytes.length > options.maxBytes)
        throw new CliError(
          'InvalidInput',
          `${options.what} ${file} (from ${options.origin}) is ${bytes.length} bytes; at most ${options.maxBytes} are accepted`,
        );
      return bytes;
    },
    signal,
  });
}

function parseWindow(text: string): number {
  if (text.trim() === '0') return 0;
  const ms = parseDuration(text, 'restart-window');
  // The restart waits this long: beyond an hour it is more likely a mistake than a choice.
  if (ms > 3_600_000) throw usageError('--restart-window must be at most 1h');
  return ms;
}

function parseBudget(text: string): ControllerConfig['unwrapBudget'] {
  if (text.trim() === '0') return { perSecond: 0, burst: 0 };
  const match = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text.trim());
  if (!match || Number(match[1]) <= 0 || Number(match[2]) < 1)
    throw usageError("--unwrap-budget must be RATE/BURST, e.g. 50/1000 (calls per second per namespace, and burst), or '0' to disable");
  return { perSecond: Number(match[1]), burst: Number(match[2]) };
}

/** --allowed-secret-types, else ENVSEAL_ALLOWED_SECRET_TYPES (entries separated by ";"). */
function tenantPolicyFrom(flags: readonly string[], env: string | undefined) {
  const entries = flags.length > 0 ? flags : (env ?? '').split(';');
  try {
    return parseTenantPolicy(entries);
  } catch (error) {
    if (error instanceof TenantPolicyError) throw new CliError('Usage', `--allowed-secret-types ${error.message}`, { cause: error });
    throw error;
  }
}

export const controllerCommand: Command = {
  name: 'controller',
  summary: 'run the controller that turns EnvelopeSecrets into Secrets',
  usage: 'envseal controller [options]',
  description: `
Watches EnvelopeSecrets, unwraps their data keys through the configured key providers,
and keeps a Secret of the same name in sync (server-side apply, field manager envseal,
owned by the EnvelopeSecret). Runs in the cluster (in-cluster config) or outside it with
--kubeconfig. SIGTERM stops taking work, finishes what is in flight and releases the
leader lease.`,
  options: OPTIONS,
  providers: 'none',
  async run(ctx) {
    const config = { ...controllerConfigFrom(ctx), providers: await controllerProvidersFrom(ctx, ctx.signal) };
    const level = stringOption(ctx.values, 'log-level') ?? ctx.io.env.ENVSEAL_LOG_LEVEL ?? 'info';
    if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level))
      throw usageError('--log-level must be trace, debug, info, warn, error or silent');
    const logger = pino({ level, base: { component: 'envseal-controller' } }, { write: (line: string) => void ctx.io.stderr.write(line) });
    const signal = ctx.signal ?? new AbortController().signal;
    await runController(config, { logger, signal });
    return EXIT.ok;
  },
};
