// Static checks of the container files (no container engine runs here): the Dockerfile, the
// compose file and the Kubernetes manifests must agree with each other and with the CLI, whose
// real parsers read the commands they contain.
import { existsSync, readFileSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseStartArgs } from '../../src/cli/start-args.js';
import { parseJoinArgs } from '../../src/cli/worker-args.js';
import { DEFAULT_PORT } from '../../src/constants.js';
import type { TrainConfig } from '../../src/config.js';

const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Parses a container command `[bin/lenet-coord.js, start, ...]` with the real CLI parser. */
function coordinatorConfig(command: string[]): TrainConfig {
  expect(command.slice(0, 2)).toEqual(['bin/lenet-coord.js', 'start']);
  const config = parseStartArgs(command.slice(2));
  if (config === 'help') throw new Error('help');
  return config;
}

function joinUrl(command: string[]): URL {
  expect(command.slice(0, 2)).toEqual(['bin/lenet-worker.js', 'join']);
  const options = parseJoinArgs(command.slice(2));
  if (options === 'help') throw new Error('help');
  return new URL(options.url);
}

const savedToken = process.env.LENET_TOKEN;
afterEach(() => {
  if (savedToken === undefined) delete process.env.LENET_TOKEN;
  else process.env.LENET_TOKEN = savedToken;
});

describe('Dockerfile', () => {
  const text = read('docker/Dockerfile');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));

  it('is multi-stage, installs only production dependencies and runs as a non-root user', () => {
    expect(lines.filter((l) => l.startsWith('FROM ')).length).toBeGreaterThanOrEqual(2);
    const runtime = text.slice(text.lastIndexOf('\nFROM '));
    expect(runtime).toMatch(/npm ci --omit=dev/);
    const user = runtime.match(/^USER (\S+)/m);
    expect(user).not.toBeNull();
    expect(['root', '0']).not.toContain(user![1]);
  });

  it('copies everything the programs read at run time, and exposes the default port', () => {
    for (const dir of ['dist', 'bin', 'proto', 'dashboard']) expect(text).toMatch(new RegExp(`COPY .*\\b${dir}\\b`));
    for (const dir of ['bin', 'proto', 'dashboard', 'src']) expect(existsSync(new URL(dir, root))).toBe(true);
    expect(text).toMatch(new RegExp(`^EXPOSE ${DEFAULT_PORT}$`, 'm'));
  });

  it("has a default command the coordinator's parser accepts", () => {
    const cmd = JSON.parse(text.match(/^CMD (\[.*\])$/m)![1]) as string[];
    process.env.LENET_TOKEN = 'x';
    expect(coordinatorConfig(cmd).checkpointDir).toBe('/data/checkpoints');
  });
});

describe('compose file', () => {
  const compose = parse(read('docker/compose.yaml')) as Json;
  const coord = compose.services.coordinator as Json;
  const worker = compose.services.worker as Json;

  it('has a coordinator and a scalable worker on the same image', () => {
    expect(coord.image).toBe(worker.image);
    expect(worker.ports).toBeUndefined(); // published ports would clash with --scale worker=N
    expect(worker.container_name).toBeUndefined();
    expect(worker.depends_on).toContain('coordinator');
  });

  it('needs the token from the environment file: without it the coordinator refuses 0.0.0.0', () => {
    expect(coord.env_file).toBe('.env');
    expect(worker.env_file).toBe('.env');
    expect(read('docker/.env.example')).toMatch(/^LENET_TOKEN=/m);
    delete process.env.LENET_TOKEN;
    expect(() => coordinatorConfig(coord.command)).toThrow(/without a token/);
  });

  it('agrees on ports, service name and the checkpoint volume', () => {
    process.env.LENET_TOKEN = 'x';
    const config = coordinatorConfig(coord.command);
    expect(config.host).toBe('0.0.0.0');
    expect(coord.ports).toContain(`${config.port}:${config.port}`);
    expect(config.resume).toBe(true);
    const mount = (coord.volumes as string[]).map((v) => v.split(':'));
    expect(mount.some(([name, target]) => target === config.checkpointDir && name in compose.volumes)).toBe(true);
    const url = joinUrl(worker.command);
    expect(url.hostname).toBe('coordinator');
    expect(Number(url.port)).toBe(config.port);
  });
});

describe('Kubernetes manifests', () => {
  const docs = ['secret', 'coordinator', 'worker'].flatMap((f) => parseAllDocuments(read(`docker/k8s/${f}.yaml`)).map((d) => d.toJSON() as Json));
  const find = (kind: string, name: string): Json => {
    const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
    expect(doc, `${kind} ${name}`).toBeDefined();
    return doc!;
  };
  const coordDeploy = find('Deployment', 'lenet-coordinator');
  const workerDeploy = find('Deployment', 'lenet-worker');
  const service = find('Service', 'lenet-coordinator');
  const secret = find('Secret', 'lenet-token');
  const coordContainer = coordDeploy.spec.template.spec.containers[0] as Json;
  const workerContainer = workerDeploy.spec.template.spec.containers[0] as Json;

  it('has a coordinator Deployment and Service, a worker Deployment with replicas, and the token in a Secret', () => {
    expect(coordDeploy.spec.replicas).toBe(1);
    expect(workerDeploy.spec.replicas).toBeGreaterThan(1);
    for (const c of [coordContainer, workerContainer]) {
      const env = (c.env as Json[]).find((e) => e.name === 'LENET_TOKEN')!;
      expect(env.valueFrom.secretKeyRef.name).toBe(secret.metadata.name);
      expect(secret.stringData).toHaveProperty(env.valueFrom.secretKeyRef.key);
    }
    expect(coordContainer.image).toBe(workerContainer.image);
    for (const d of [coordDeploy, workerDeploy]) expect(d.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it('agrees on the service selector, ports, worker URL and checkpoint volume', () => {
    process.env.LENET_TOKEN = 'x';
    const config = coordinatorConfig(coordContainer.args);
    expect(service.spec.selector).toEqual(coordDeploy.spec.template.metadata.labels);
    expect(coordDeploy.spec.selector.matchLabels).toEqual(coordDeploy.spec.template.metadata.labels);
    expect(coordContainer.ports[0].containerPort).toBe(config.port);
    expect(service.spec.ports[0].targetPort).toBe(config.port);
    const url = joinUrl(workerContainer.args.map((a: string) => (a === '$(POD_NAME)' ? 'pod-1' : a)));
    expect(url.hostname).toBe(service.metadata.name);
    expect(Number(url.port)).toBe(service.spec.ports[0].port);
    const mount = (coordContainer.volumeMounts as Json[]).find((m) => m.mountPath === config.checkpointDir)!;
    const volume = (coordDeploy.spec.template.spec.volumes as Json[]).find((v) => v.name === mount.name)!;
    find('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName);
    expect(coordContainer.readinessProbe.httpGet.port).toBe(config.port);
  });
});
