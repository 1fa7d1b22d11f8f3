// Sealed Secrets helpers for the controller benchmark: its hybrid encryption (so that
// 10,000 SealedSecrets are made in seconds rather than with 10,000 kubeseal processes),
// and running its controller out of cluster.
//
// The encryption is pkg/crypto.HybridEncrypt of github.com/bitnami-labs/sealed-secrets
// v0.40.0: a random 32-byte session key; RSA-OAEP(SHA-256, label) of it; AES-256-GCM
// with a zero nonce of the value; output = uint16 BE length of the RSA ciphertext ||
// RSA ciphertext || GCM ciphertext+tag. The label of the default (strict) scope is
// "namespace/name". The controller decrypting it is the check (bench/controller.ts
// compares every Secret's values).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, createCipheriv, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function hybridEncrypt(publicKey: KeyObject, plaintext: Buffer, label: Buffer): Buffer {
  const sessionKey = randomBytes(32);
  const rsa = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, sessionKey);
  const cipher = createCipheriv('aes-256-gcm', sessionKey, Buffer.alloc(12), { authTagLength: 16 });
  const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(rsa.length);
  return Buffer.concat([length, rsa, body]);
}

export function sealedSecret(publicKey: KeyObject, namespace: string, name: string, values: Record<string, string>): Record<string, unknown> {
  const label = Buffer.from(`${namespace}/${name}`);
  const encryptedData = Object.fromEntries(
    Object.entries(values).map(([key, value]) => [key, hybridEncrypt(publicKey, Buffer.from(value), label).toString('base64')]),
  );
  return {
    apiVersion: 'bitnami.com/v1alpha1',
    kind: 'SealedSecret',
    metadata: { name, namespace },
    spec: { encryptedData, template: { metadata: { name, namespace }, type: 'Opaque' } },
  };
}

/**
 * Starts the Sealed Secrets controller against an API server from outside a cluster.
 * Its Main() calls rest.InClusterConfig() only, which reads KUBERNETES_SERVICE_HOST/PORT
 * and the service account token and CA from /var/run/secrets/kubernetes.io/serviceaccount.
 * The process gets those files in a private mount namespace (unshare -m, as root): a
 * directory of ours is bind-mounted on /run for that process alone, so the machine's
 * /run is untouched and no other process sees a service account.
 */
export function startSealedSecretsController(options: {
  binary: string;
  dir: string;
  apiServerPort: number;
  token: string;
  caCertPem: string;
  namespace: string;
  args: string[];
}): ChildProcess {
  const runDir = path.join(options.dir, 'run');
  const sa = path.join(runDir, 'secrets/kubernetes.io/serviceaccount');
  mkdirSync(sa, { recursive: true });
  writeFileSync(path.join(sa, 'token'), options.token);
  writeFileSync(path.join(sa, 'ca.crt'), options.caCertPem);
  writeFileSync(path.join(sa, 'namespace'), options.namespace);
  const script = 'mount --bind "$1" /run && shift && exec "$@"';
  return spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', runDir, options.binary, ...options.args], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: String(options.apiServerPort),
      POD_NAMESPACE: options.namespace,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
