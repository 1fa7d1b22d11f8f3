import { describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../args.ts';
import { CliError } from '../errors.ts';
import type { CliIo } from '../io.ts';
import { controllerCommand, controllerConfigFrom } from './controller.ts';
import { DEFAULT_CONTROLLER_CONFIG } from '../../controller/manager.ts';

/** The controller's configuration from a command line and environment, as `envseal controller` parses them. */
function configOf(argv: string[], env: Record<string, string> = {}) {
  const { values } = parseCommandArgs(argv, controllerCommand.options, { max: 0 });
  return controllerConfigFrom({ values, io: { env } as unknown as CliIo });
}

describe('envseal controller --allowed-secret-types', () => {
  it('defaults to the default policy', () => {
    expect(configOf([]).tenantPolicy).toEqual(DEFAULT_CONTROLLER_CONFIG.tenantPolicy);
    expect(configOf([]).tenantPolicy).toEqual({ extraSecretTypes: {} });
  });

  it('reads repeated flags (as the chart renders them), * for every namespace', () => {
    const config = configOf(['--allowed-secret-types=*=example.com/all', '--allowed-secret-types', 'team-a=example.com/a,helm.sh/release.v1']);
    expect(config.tenantPolicy).toEqual({ extraSecretTypes: { '*': ['example.com/all'], 'team-a': ['example.com/a', 'helm.sh/release.v1'] } });
  });

  it('reads ENVSEAL_ALLOWED_SECRET_TYPES when no flag is given; a flag wins', () => {
    expect(configOf([], { ENVSEAL_ALLOWED_SECRET_TYPES: '*=a.b/c; team-a=d.e/f' }).tenantPolicy).toEqual({
      extraSecretTypes: { '*': ['a.b/c'], 'team-a': ['d.e/f'] },
    });
    expect(configOf(['--allowed-secret-types=team-b=x.y/z'], { ENVSEAL_ALLOWED_SECRET_TYPES: '*=a.b/c' }).tenantPolicy).toEqual({
      extraSecretTypes: { 'team-b': ['x.y/z'] },
    });
  });

  it.each([
    ['team-a', /--allowed-secret-types "team-a" is not NAMESPACE=TYPE\[,TYPE\]/],
    ['kube-system=kubernetes.io/service-account-token', /kubernetes.io\/service-account-token asks the cluster to mint credentials; no policy can allow it/],
    ['*=bootstrap.kubernetes.io/token', /bootstrap.kubernetes.io\/token asks the cluster to mint credentials/],
  ])('refuses %s as a usage error naming it', (entry, message) => {
    let error: unknown;
    try {
      configOf([`--allowed-secret-types=${entry}`]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).code).toBe('Usage');
    expect((error as CliError).message).toMatch(message);
  });
});

describe('envseal controller --restart-window', () => {
  it('defaults to 10 s; reads a duration; 0 restarts at each Secret written', () => {
    expect(configOf([]).restartWindowMs).toBe(10_000);
    expect(configOf(['--restart-window=30s']).restartWindowMs).toBe(30_000);
    expect(configOf(['--restart-window', '2m']).restartWindowMs).toBe(120_000);
    expect(configOf(['--restart-window=0']).restartWindowMs).toBe(0);
    expect(configOf(['--restart-window=0s']).restartWindowMs).toBe(0);
  });

  it.each([
    ['soon', /--restart-window must be a duration such as 500ms, 30s, 5m or 1h/],
    ['-5s', /--restart-window must be a duration/],
    ['2h', /--restart-window must be at most 1h/],
  ])('refuses %s as a usage error naming the flag', (value, message) => {
    expect(() => configOf([`--restart-window=${value}`])).toThrow(message);
    try {
      configOf([`--restart-window=${value}`]);
    } catch (error) {
      expect((error as CliError).code).toBe('Usage');
    }
  });
});
