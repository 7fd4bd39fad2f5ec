/**
 * deploy/ checked against the CLI, since no Kubernetes cluster runs here: the Kubernetes manifests
 * (as `kubectl apply -k` would apply them: a coordinator Job, no Secret, seccomp on every pod, the
 * Prometheus annotations) and the Compose file (tokens, resource limits) parse as YAML, use one
 * image, agree on the coordinator's port (container, Service, probes, scrape annotations, worker
 * URL), pass the join token from one secret, and set only GRADHUB_*
 * variables that mirror a real flag of the command they run, with values that flag accepts (they go
 * through the CLI's own parseOptions). The Dockerfile's ENTRYPOINT, HEALTHCHECK, user and port match,
 * and deploy/README.md's variable tables are the ones generated from packages/cli/src/options.ts.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  CLUSTER_OPTIONS, TRAINING_OPTIONS, WORKER_OPTIONS, envName, parseOptions, type OptionSpec,
  envTable, NODE_FLAGS,
} from '@gradhub/cli';

const ROOT = new URL('../', import.meta.url);
const read = (p: string): string => fs.readFileSync(new URL(p, ROOT), 'utf8');

/** The flags each containerised command reads (the GRADHUB_* variables mirror them). */
const COMMANDS: Record<string, readonly OptionSpec[]> = {
  coordinator: [...TRAINING_OPTIONS, ...CLUSTER_OPTIONS],
  worker: WORKER_OPTIONS,
};
const CLI_PACKAGE = JSON.parse(read('packages/cli/package.json')) as { version: string; bin: Record<string, string> };
const IMAGE = `gradhub:${CLI_PACKAGE.version}`;
const MAIN_JS = `/app/packages/cli/${CLI_PACKAGE.bin.gradhub.replace(/^\.\//, '')}`;
/** The user the image runs as (Dockerfile USER) and the manifests ask for. */
const UID = 10001;

// ------------------------------------------------------------------------------------------------

type Obj = Record<string, any>;

function parseYamlFile(file: string): Obj[] {
  const docs = parseAllDocuments(read(file));
  const out: Obj[] = [];
  for (const doc of docs) {
    expect(doc.errors.map((e) => e.message), `${file}: YAML errors`).toEqual([]);
    expect(doc.warnings.map((e) => e.message), `${file}: YAML warnings`).toEqual([]);
    const js = doc.toJS() as Obj | null;
    if (js !== null) out.push(js);
  }
  return out;
}

const K8S_FILES = fs.readdirSync(new URL('deploy/k8s/', ROOT)).filter((f) => /\.ya?ml$/.test(f)).sort();
const K8S = K8S_FILES.flatMap((f) => parseYamlFile(`deploy/k8s/${f}`).map((doc) => ({ file: f, doc })));

/**
 * What `kubectl apply -k deploy/k8s` applies (`kubectl kustomize deploy/k8s` renders the same): the
 * documents of the kustomization's resources, with its labels on every object's metadata and its
 * images on every container. Only the fields used here are modelled; any other fails the test.
 */
function renderKustomization(): Obj[] {
  const [kust] = parseYamlFile('deploy/k8s/kustomization.yaml');
  expect(Object.keys(kust).filter((k) => !['apiVersion', 'kind', 'labels', 'resources', 'images'].includes(k)), 'kustomization fields the test renders').toEqual([]);
  const labels: Record<string, string> = {};
  for (const l of kust.labels ?? []) {
    expect(Object.keys(l).filter((k) => k !== 'pairs'), 'labels: pairs only (no selectors or templates)').toEqual([]);
    Object.assign(labels, l.pairs);
  }
  const images = new Map<string, Obj>((kust.images ?? []).map((i: Obj) => [i.name, i]));
  return (kust.resources as string[]).flatMap((f) => parseYamlFile(`deploy/k8s/${f}`)).map((doc) => {
    const out = structuredClone(doc);
    out.metadata.labels = { ...out.metadata.labels, ...labels };
    for (const c of out.spec?.template?.spec?.containers ?? []) {
      const [name, tag] = String(c.image).split(':');
      const img = images.get(name);
      if (img) c.image = `${img.newName ?? name}:${img.newTag ?? tag}`;
    }
    return out;
  });
}

const RENDERED = renderKustomization();

/** The one rendered object of this kind and name. */
function k8s(kind: string, name: string): Obj {
  const found = RENDERED.filter((doc) => doc.kind === kind && doc.metadata?.name === name);
  expect(found.length, `${kind}/${name} in the rendered deploy/k8s`).toBe(1);
  return found[0];
}

/** The k8s env list as name -> value, with secret references as a placeholder (and returned apart). */
function k8sEnv(container: Obj): { env: Record<string, string>; secrets: Record<string, { name: string; key: string }> } {
  const env: Record<string, string> = {};
  const secrets: Record<string, { name: string; key: string }> = {};
  for (const e of container.env ?? []) {
    expect(env[e.name], `${e.name} set twice`).toBeUndefined();
    if (e.valueFrom !== undefined) {
      const ref = e.valueFrom.secretKeyRef;
      expect(ref, `${e.name}: only secretKeyRef is used`).toBeDefined();
      secrets[e.name] = { name: ref.name, key: ref.key };
      env[e.name] = 'from-a-secret';
    } else {
      expect(typeof e.value, `${e.name}: env values are strings in Kubernetes`).toBe('string');
      env[e.name] = e.value;
    }
  }
  return { env, secrets };
}

/** Every GRADHUB_* variable mirrors a flag of `command`, and its value is one that flag accepts. */
function checkEnvAgainstCli(command: string, env: Record<string, string>, where: string): void {
  const specs = COMMANDS[command];
  expect(specs, `${where}: runs a known command`).toBeDefined();
  const known = new Map(specs.map((s) => [envName(s.name), s]));
  for (const name of Object.keys(env)) {
    expect(name.startsWith('GRADHUB_'), `${where}: ${name} is not a GRADHUB_* variable`).toBe(true);
    expect(known.has(name), `${where}: ${name} mirrors no flag of \`gradhub ${command}\``).toBe(true);
  }
  // The CLI's own parser: throws E_USAGE naming the variable on a bad value.
  expect(() => parseOptions([], specs, env), where).not.toThrow();
}

/** A probe's httpGet path and port number (a named port resolved against the container). */
function probeTarget(probe: Obj, container: Obj): { path: string; port: number } {
  const get = probe.httpGet;
  expect(get, 'probes are httpGet').toBeDefined();
  const port = typeof get.port === 'number' ? get.port : container.ports.find((p: Obj) => p.name === get.port)?.containerPort;
  return { path: get.path, port };
}

/** A Compose value with ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} interpolated as Compose
 * would with none of them set (defaults taken, required ones given `required`). */
function interpolate(value: unknown, required = 'set-by-the-user'): string {
  return String(value).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}/g, (_m, _name, dash, def, q) => {
    if (dash !== undefined) return def as string;
    if (q !== undefined) return required;
    return '';
  });
}

/** The variables a Compose value reads: name -> default ('' for none, null when required). */
function interpolations(value: unknown): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const m of String(value).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}/g)) {
    out.set(m[1], m[2] !== undefined ? m[3] : m[4] !== undefined ? null : '');
  }
  return out;
}

// ------------------------------------------------------------------------------------------------

describe('deploy/k8s', () => {
  const coordinator = k8s('Job', 'gradhub-coordinator');
  const workers = k8s('Deployment', 'gradhub-worker');
  const service = k8s('Service', 'gradhub-coordinator');
  const cc = coordinator.spec.template.spec.containers[0];
  const wc = workers.spec.template.spec.containers[0];
  const { env: cEnv, secrets: cSecrets } = k8sEnv(cc);
  const { env: wEnv, secrets: wSecrets } = k8sEnv(wc);
  const port = Number(cEnv.GRADHUB_PORT ?? 8080);

  it('parses: every document has apiVersion, kind and a name, and kustomization lists every file', () => {
    expect(K8S_FILES.length).toBeGreaterThan(0);
    for (const { file, doc } of K8S) {
      expect(typeof doc.apiVersion, file).toBe('string');
      expect(typeof doc.kind, file).toBe('string');
      if (doc.kind !== 'Kustomization') expect(typeof doc.metadata?.name, file).toBe('string');
    }
    const kust = K8S.find((r) => r.doc.kind === 'Kustomization');
    expect(kust).toBeDefined();
    expect([...kust!.doc.resources].sort()).toEqual(K8S_FILES.filter((f) => f !== kust!.file));
    const img = kust!.doc.images.find((i: Obj) => i.name === 'gradhub');
    expect(`${img.newName}:${img.newTag}`).toBe(IMAGE);
  });

  it('runs one image, the CLI entry point with the command as its argument, as the image user', () => {
    for (const [workload, container, command] of [[coordinator, cc, 'coordinator'], [workers, wc, 'worker']] as const) {
      expect(container.image).toBe(IMAGE);
      expect(container.command, 'the image ENTRYPOINT is used').toBeUndefined();
      expect(container.args[0]).toBe(command);
      const sc = workload.spec.template.spec.securityContext;
      expect(sc.runAsNonRoot).toBe(true);
      expect(sc.runAsUser).toBe(UID);
      expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    }
    expect(workers.spec.selector.matchLabels).toEqual(
      Object.fromEntries(Object.keys(workers.spec.selector.matchLabels).map((k) => [k, workers.spec.template.metadata.labels[k]])),
    );
    // A Job's selector is generated by Kubernetes from its own uid.
    expect(coordinator.spec.selector).toBeUndefined();
    expect(coordinator.spec.manualSelector).toBeUndefined();
  });

  it('every pod runs under the runtime\'s default seccomp profile, non-root, without privileges', () => {
    const pods = RENDERED.filter((doc) => doc.spec?.template?.spec !== undefined);
    expect(pods.map((doc) => `${doc.kind}/${doc.metadata.name}`).sort()).toEqual(['Deployment/gradhub-worker', 'Job/gradhub-coordinator']);
    for (const doc of pods) {
      const pod = doc.spec.template.spec;
      const at = `${doc.kind}/${doc.metadata.name}`;
      expect(pod.securityContext.seccompProfile, at).toEqual({ type: 'RuntimeDefault' });
      expect(pod.securityContext.runAsNonRoot, at).toBe(true);
      expect(pod.automountServiceAccountToken, at).toBe(false);
      for (const c of pod.containers) {
        expect(c.securityContext.allowPrivilegeEscalation, `${at} ${c.name}`).toBe(false);
        expect(c.securityContext.readOnlyRootFilesystem, `${at} ${c.name}`).toBe(true);
        expect(c.securityContext.capabilities.drop, `${at} ${c.name}`).toEqual(['ALL']);
      }
    }
  });

  it('sets only GRADHUB_* variables that mirror flags of the command, with valid values', () => {
    checkEnvAgainstCli('coordinator', cEnv, 'Job gradhub-coordinator');
    checkEnvAgainstCli('worker', wEnv, 'Deployment gradhub-worker');
  });

  it('coordinator: a Job of one pod, restarted on failure only, so a finished run is not started again', () => {
    expect(coordinator.apiVersion).toBe('batch/v1');
    expect(coordinator.spec.parallelism ?? 1).toBe(1);
    expect(coordinator.spec.completions ?? 1).toBe(1);
    expect(coordinator.spec.template.spec.restartPolicy).toBe('OnFailure');
    expect(coordinator.spec.backoffLimit).toBeGreaterThan(0);
  });

  it('coordinator: port = container port = Service port, /healthz probes on it, Prometheus scrapes /metrics there', () => {
    const http = cc.ports.find((p: Obj) => p.containerPort === port);
    expect(http, `a container port ${port}`).toBeDefined();
    expect(service.spec.ports).toHaveLength(1);
    expect(service.spec.ports[0].port).toBe(port);
    expect([port, http.name]).toContain(service.spec.ports[0].targetPort);
    expect(service.spec.selector).toEqual(
      Object.fromEntries(Object.keys(service.spec.selector).map((k) => [k, coordinator.spec.template.metadata.labels[k]])),
    );
    for (const kind of ['readinessProbe', 'livenessProbe']) expect(cc[kind], kind).toBeDefined();
    for (const kind of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      if (cc[kind] === undefined) continue;
      expect(probeTarget(cc[kind], cc), kind).toEqual({ path: '/healthz', port });
    }
    const scrape = coordinator.spec.template.metadata.annotations;
    expect(scrape['prometheus.io/scrape']).toBe('true');
    expect(Number(scrape['prometheus.io/port'])).toBe(port);
    expect(scrape['prometheus.io/path']).toBe('/metrics');
  });

  it('coordinator: checkpoints and data on PersistentVolumeClaims of their own, resumed on restart', () => {
    const volumes = new Map<string, Obj>(coordinator.spec.template.spec.volumes.map((v: Obj) => [v.name, v]));
    const mounts = new Map<string, string>(cc.volumeMounts.map((m: Obj) => [m.mountPath, m.name]));
    for (const dir of [cEnv.GRADHUB_CHECKPOINT_DIR, cEnv.GRADHUB_DATA]) {
      const claim = volumes.get(mounts.get(dir)!)?.persistentVolumeClaim?.claimName;
      expect(claim, `a claim mounted at ${dir}`).toBeDefined();
      expect(k8s('PersistentVolumeClaim', claim).spec.resources.requests.storage).toBeDefined();
    }
    expect(cEnv.GRADHUB_RESUME).toBe('true');
    expect(coordinator.spec.template.spec.securityContext.fsGroup).toBe(UID);
  });

  it('workers dial the coordinator Service; the cluster size covers --min-workers', () => {
    expect(wEnv.GRADHUB_URL).toBe(`ws://${service.metadata.name}:${service.spec.ports[0].port}`);
    expect(workers.spec.replicas).toBeGreaterThanOrEqual(Number(cEnv.GRADHUB_MIN_WORKERS ?? 1));
  });

  it('the tokens come from one Secret, which the README has you create and apply -k never replaces; the workers are trusted', () => {
    expect(cSecrets.GRADHUB_TOKEN).toEqual({ name: 'gradhub-token', key: 'token' });
    expect(cSecrets.GRADHUB_TRUSTED_TOKEN).toEqual({ name: 'gradhub-token', key: 'trusted-token' });
    expect(wSecrets.GRADHUB_TOKEN).toEqual(cSecrets.GRADHUB_TRUSTED_TOKEN);
    expect(RENDERED.filter((doc) => doc.kind === 'Secret'), 'no Secret in what apply -k applies').toEqual([]);
    expect(read('deploy/README.md')).toMatch(/kubectl -n gradhub create secret generic gradhub-token --from-literal=token=.* --from-literal=trusted-token=/);
  });
});

describe('deploy/compose.yaml', () => {
  const [compose] = parseYamlFile('deploy/compose.yaml');
  const services = compose.services as Obj;
  const envOf = (s: Obj): Record<string, string> => {
    expect(Array.isArray(s.environment), 'environment is a map').toBe(false);
    return Object.fromEntries(Object.entries(s.environment as Obj).map(([k, v]) => [k, interpolate(v)]));
  };

  it('has a coordinator and a scalable worker service on one image, built by deploy/Dockerfile', () => {
    expect(Object.keys(services).sort()).toEqual(['coordinator', 'worker']);
    expect(interpolate(services.coordinator.image)).toBe(IMAGE);
    expect(services.worker.image).toBe(services.coordinator.image);
    expect(services.coordinator.build.dockerfile).toBe('deploy/Dockerfile');
    expect(new URL(`${services.coordinator.build.context}/`, new URL('deploy/', ROOT)).href).toBe(ROOT.href);
    expect(interpolate(services.coordinator.build.args.BASE_IMAGE)).toBe('node:20-bookworm-slim');
    expect(services.coordinator.command).toEqual(['coordinator']);
    expect(services.worker.command).toEqual(['worker']);
    // --scale worker=N needs no fixed name and no published port on the worker.
    expect(services.worker.container_name).toBeUndefined();
    expect(services.worker.ports).toBeUndefined();
  });

  it('configures through GRADHUB_* variables that mirror flags, with valid values and the CLI defaults', () => {
    // Deliberate differences from the CLI default, for containers.
    const deployDefaults = new Set(['GRADHUB_GRACE_MS']);
    for (const [name, command] of [['coordinator', 'coordinator'], ['worker', 'worker']]) {
      const s = services[name];
      checkEnvAgainstCli(command, envOf(s), `compose service ${name}`);
      const specs = new Map(COMMANDS[command].map((o) => [envName(o.name), o]));
      for (const [key, raw] of Object.entries(s.environment as Obj)) {
        for (const [variable, def] of interpolations(raw)) {
          // The one exception: the worker service presents the coordinator's trusted token as its --token.
          const expected = name === 'worker' && key === 'GRADHUB_TOKEN' ? 'GRADHUB_TRUSTED_TOKEN' : key;
          expect(variable, `${name}.${key} reads the variable ${expected}`).toBe(expected);
          const spec = specs.get(key)!;
          if (def !== null && def !== '' && spec.default !== undefined && !deployDefaults.has(key)) {
            expect(def, `${name}.${key}: default differs from the CLI's`).toBe(String(spec.default));
          }
        }
      }
    }
  });

  it('publishes the coordinator port, checkpoints on a volume with --resume, workers dial the service', () => {
    const c = envOf(services.coordinator);
    const w = envOf(services.worker);
    const port = Number(c.GRADHUB_PORT);
    expect(services.coordinator.ports.map((p: string) => Number(String(p).split(':').at(-1)))).toContain(port);
    expect(w.GRADHUB_URL).toBe(`ws://coordinator:${port}`);
    expect(c.GRADHUB_RESUME).toBe('true');
    const volumes = services.coordinator.volumes.map((v: string) => v.split(':'));
    const ckpt = volumes.find((v: string[]) => v[1] === c.GRADHUB_CHECKPOINT_DIR);
    expect(ckpt, 'a volume at GRADHUB_CHECKPOINT_DIR').toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(ckpt[0]);
    expect(services.worker.depends_on.coordinator.condition).toBe('service_healthy');
  });

  it('gives the workers the coordinator\'s required trusted token, volunteers a required join token, and the published dashboard a required admin token', () => {
    expect(services.worker.environment.GRADHUB_TOKEN).toBe(services.coordinator.environment.GRADHUB_TRUSTED_TOKEN);
    expect(interpolations(services.coordinator.environment.GRADHUB_TRUSTED_TOKEN).get('GRADHUB_TRUSTED_TOKEN')).toBeNull();
    expect(interpolations(services.coordinator.environment.GRADHUB_TOKEN).get('GRADHUB_TOKEN')).toBeNull();
    expect(interpolations(services.coordinator.environment.GRADHUB_ADMIN_TOKEN).get('GRADHUB_ADMIN_TOKEN')).toBeNull();
  });

  it('limits the CPUs and memory of both services', () => {
    for (const name of ['coordinator', 'worker']) {
      const limits = services[name].deploy?.resources?.limits;
      expect(Number(limits?.cpus), `${name}: cpus`).toBeGreaterThan(0);
      expect(String(limits?.memory), `${name}: memory`).toMatch(/^\d+(\.\d+)?[kmg]b?$/i);
    }
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = read('deploy/Dockerfile');
  const lines = dockerfile.split('\n').filter((l) => !/^\s*#/.test(l));
  const instr = (name: string): string[] => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());

  it('takes the base image as a build argument, default the official Node 20 slim image', () => {
    const first = lines.findIndex((l) => l.startsWith('FROM '));
    const arg = lines.findIndex((l) => l.startsWith('ARG BASE_IMAGE='));
    expect(arg).toBeGreaterThanOrEqual(0);
    expect(arg).toBeLessThan(first);
    expect(lines[arg]).toBe('ARG BASE_IMAGE=node:20-bookworm-slim');
    for (const from of instr('FROM')) expect(from.split(/\s+/)[0]).toBe('${BASE_IMAGE}');
  });

  it('installs with npm ci from every workspace package.json, builds, and keeps production deps apart', () => {
    const workspaces = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;
    for (const ws of workspaces) expect(dockerfile, ws).toContain(`COPY ${ws}/package.json ${ws}/`);
    expect(dockerfile).toMatch(/RUN npm ci [^\n]*\n/);
    expect(dockerfile).toContain('RUN npm run build');
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
  });

  it('runs the CLI as a non-root user, with a healthcheck that knows both roles', () => {
    // gradhub's Node flags (packages/cli/src/node-flags.ts), in the bin's shebang and the ENTRYPOINT.
    const shebang = fs.readFileSync(new URL(`packages/cli/${CLI_PACKAGE.bin.gradhub.replace(/^\.\//, '')}`, ROOT), 'utf8').split('\n')[0];
    const flags = shebang.replace(/^#!\/usr\/bin\/env -S node ?/, '').split(' ').filter(Boolean);
    expect(flags).toEqual(NODE_FLAGS);
    expect(instr('ENTRYPOINT')).toEqual([JSON.stringify(['node', ...NODE_FLAGS, MAIN_JS]).replace(/,/g, ', ')]);
    expect(instr('USER')).toEqual([`${UID}:${UID}`]);
    expect(instr('EXPOSE')).toEqual(['8080']);
    const hc = lines.find((l) => l.startsWith('HEALTHCHECK '));
    expect(hc).toMatch(/CMD \["node", "\/app\/deploy\/healthcheck\.mjs"\]$/);
    expect(dockerfile).toContain('COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs');
    const script = read('deploy/healthcheck.mjs');
    expect(script).toContain("argv[0] !== 'coordinator'");
    expect(script).toContain('/healthz');
    expect(script).toContain('/packages/cli/dist/main.js');
    // The folders the manifests mount are made and owned by that user in the image.
    expect(dockerfile).toContain('mkdir -p /var/lib/gradhub/data /var/lib/gradhub/checkpoints');
    expect(dockerfile).toContain(`chown -R ${UID}:${UID} /var/lib/gradhub`);
  });
});

describe('deploy/README.md', () => {
  it('lists the variables generated from packages/cli/src/options.ts', () => {
    const readme = read('deploy/README.md');
    for (const command of Object.keys(COMMANDS)) {
      const m = new RegExp(`<!-- env-table:${command}:begin -->\\n([\\s\\S]*?)\\n<!-- env-table:${command}:end -->`).exec(readme);
      expect(m, `deploy/README.md has the ${command} table between its markers`).not.toBeNull();
      expect(m![1], `the ${command} table is stale: replace it with the expected text`).toBe(envTable(COMMANDS[command]));
    }
  });
});
