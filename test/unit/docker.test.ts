// Static checks of the container files: the Dockerfile, the compose file and the Kubernetes
// manifests must agree with each other and with the CLI, whose real parsers read the commands
// they contain, and the manifests must pass the Kubernetes API schemas (kubernetes-models, offline).
// `npm run test:containers` runs the real thing where a Docker daemon is.
import { existsSync, readFileSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseStartArgs } from '../../src/cli/start-args.js';
import { parseJoinArgs } from '../../src/cli/worker-args.js';
import { DEFAULT_PORT } from '../../src/constants.js';
import type { TrainConfig } from '../../src/config.js';
import { Job } from 'kubernetes-models/batch/v1';
import { PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';

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
    process.env.LENET_TOKEN = 'container-test-token-0123';
    expect(coordinatorConfig(cmd).checkpointDir).toBe('/data/checkpoints');
  });
});

describe('build context', () => {
  it('leaves out the token, node_modules, git and build output, and git ignores the token file', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['.git', 'node_modules', 'dist', 'docker/.env', 'checkpoints']) expect(ignored).toContain(entry);
    expect(read('.gitignore').split('\n')).toContain('docker/.env');
  });
});

describe('compose file', () => {
  const compose = parse(read('docker/compose.yaml')) as Json;
  const coord = compose.services.coordinator as Json;
  const worker = compose.services.worker as Json;

  it('runs both programs under an init that forwards signals, with time to checkpoint on a stop', () => {
    for (const service of [coord, worker]) expect(service.init).toBe(true);
    expect(parseInt(coord.stop_grace_period as string, 10)).toBeGreaterThanOrEqual(10);
    process.env.LENET_TOKEN = 'container-test-token-0123';
    expect(coordinatorConfig(coord.command).checkpointEverySteps).toBeGreaterThan(0);
    expect(coord.healthcheck.test.join(' ')).toMatch(/\/healthz/);
  });

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
    process.env.LENET_TOKEN = 'container-test-token-0123';
    const config = coordinatorConfig(coord.command);
    expect(config.host).toBe('0.0.0.0');
    // The host port comes from LENET_PORT (default the coordinator's own), the container's is fixed.
    expect(coord.ports).toContain(`\${LENET_PORT:-${config.port}}:${config.port}`);
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
  const coordDeploy = find('Job', 'lenet-coordinator');
  const workerDeploy = find('Job', 'lenet-worker');
  const service = find('Service', 'lenet-coordinator');
  const secret = find('Secret', 'lenet-token');
  const coordContainer = coordDeploy.spec.template.spec.containers[0] as Json;
  const workerContainer = workerDeploy.spec.template.spec.containers[0] as Json;

  it('pass the Kubernetes API schemas', () => {
    const models: Record<string, new (o: Json) => { validate(): void }> = { Job, PersistentVolumeClaim, Secret, Service };
    for (const doc of docs) {
      const Model = models[doc.kind];
      expect(Model, `a schema for ${doc.kind}`).toBeDefined();
      expect(() => new Model(doc).validate(), `${doc.kind} ${doc.metadata.name}`).not.toThrow();
    }
    // The check can fail: a wrong pull policy is refused.
    const broken = structuredClone(coordDeploy);
    broken.spec.template.spec.containers[0].imagePullPolicy = 'Sometimes';
    expect(() => new Job(broken).validate()).toThrow(/imagePullPolicy/);
  });

  it('run the coordinator and the workers as Jobs that end with the run, pulling the image only if absent', () => {
    expect(coordDeploy.spec.parallelism).toBe(1);
    expect(workerDeploy.spec.parallelism).toBeGreaterThan(1);
    for (const job of [coordDeploy, workerDeploy]) {
      expect(job.spec.template.spec.restartPolicy).toBe('OnFailure');
      expect(job.spec.template.spec.containers[0].imagePullPolicy).toBe('IfNotPresent');
    }
    expect(coordContainer.livenessProbe.httpGet.path).toBe('/healthz');
    expect(coordContainer.readinessProbe.httpGet.path).toBe('/readyz');
    process.env.LENET_TOKEN = 'container-test-token-0123';
    expect(coordinatorConfig(coordContainer.args).checkpointEverySteps).toBeGreaterThan(0);
  });

  it('ship a placeholder token that the coordinator refuses', () => {
    process.env.LENET_TOKEN = secret.stringData.token;
    expect(() => coordinatorConfig(coordContainer.args)).toThrow(/placeholder/);
  });

  it('have a coordinator Job and Service, a worker Job, and the token in a Secret', () => {
    for (const c of [coordContainer, workerContainer]) {
      const env = (c.env as Json[]).find((e) => e.name === 'LENET_TOKEN')!;
      expect(env.valueFrom.secretKeyRef.name).toBe(secret.metadata.name);
      expect(secret.stringData).toHaveProperty(env.valueFrom.secretKeyRef.key);
    }
    expect(coordContainer.image).toBe(workerContainer.image);
    for (const d of [coordDeploy, workerDeploy]) expect(d.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it('agrees on the service selector, ports, worker URL and checkpoint volume', () => {
    process.env.LENET_TOKEN = 'container-test-token-0123';
    const config = coordinatorConfig(coordContainer.args);
    expect(service.spec.selector).toEqual(coordDeploy.spec.template.metadata.labels);
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
