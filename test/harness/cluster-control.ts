// The shared control plane lives in vitest's globalSetup process; tests run in worker
// processes. This tiny loopback HTTP endpoint (bearer token) lets a test restart or
// stop components of the shared control plane (smoke tests now, fault tests later).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { componentNames, type ComponentName, type ControlPlane, type StopComponentOptions } from './control-plane.ts';

export interface ClusterControlEndpoint {
  url: string;
  token: string;
}

export async function serveClusterControl(cp: ControlPlane): Promise<ClusterControlEndpoint & { close(): Promise<void> }> {
  const token = randomBytes(24).toString('hex');
  const expected = Buffer.from(`Bearer ${token}`);
  let busy = Promise.resolve();
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const auth = Buffer.from(req.headers.authorization ?? '');
    if (auth.length !== expected.length || !timingSafeEqual(auth, expected)) return reply(401, { error: 'unauthorized' });
    if (req.method !== 'POST') return reply(405, { error: 'POST only' });
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      // /v1/<action>/<component>  action: stop | start | restart
      const match = /^\/v1\/(stop|start|restart)\/([a-z-]+)$/.exec(req.url ?? '');
      const component = match?.[2] as ComponentName | undefined;
      if (match === null || component === undefined || !componentNames.includes(component)) return reply(404, { error: 'unknown action' });
      let options: StopComponentOptions = {};
      try {
        options = raw === '' ? {} : (JSON.parse(raw) as StopComponentOptions);
      } catch {
        return reply(400, { error: 'invalid JSON' });
      }
      const action = match[1];
      const run = async () => {
        if (action !== 'start') await cp.stopComponent(component, options);
        if (action !== 'stop') await cp.startComponent(component);
      };
      // One operation at a time.
      busy = busy.then(run).then(
        () => reply(200, { ok: true }),
        (err: unknown) => reply(500, { error: (err as Error).message }),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ClusterControl {
  stop(component: ComponentName, options?: StopComponentOptions): Promise<void>;
  start(component: ComponentName): Promise<void>;
  restart(component: ComponentName, options?: StopComponentOptions): Promise<void>;
  restartApiServer(options?: StopComponentOptions): Promise<void>;
  restartEtcd(options?: StopComponentOptions): Promise<void>;
}

export function connectClusterControl(endpoint: ClusterControlEndpoint): ClusterControl {
  const call = async (action: string, component: ComponentName, options: StopComponentOptions = {}) => {
    const res = await fetch(`${endpoint.url}/v1/${action}/${component}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${endpoint.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(options),
      signal: AbortSignal.timeout(300_000),
    });
    const body = (await res.json()) as { error?: string };
    if (!res.ok) throw new Error(`cluster control ${action} ${component}: ${res.status} ${body.error ?? ''}`);
  };
  return {
    stop: (c, o) => call('stop', c, o),
    start: (c) => call('start', c),
    restart: (c, o) => call('restart', c, o),
    restartApiServer: (o) => call('restart', 'kube-apiserver', o),
    restartEtcd: (o) => call('restart', 'etcd', o),
  };
}
