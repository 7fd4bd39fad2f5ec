// The two credentials and the socket classes on a real loopback cluster: a worker with the trusted
// token is trusted, one with the join token a volunteer; the Hello must present the upgrade's
// credential; volunteers filling their slots (at the upgrade or at the Hello) lock no trusted worker out.
import { afterEach, describe, expect, it } from 'vitest';
import { gradhub } from '@gradhub/proto';
import { startCluster, type Cluster, type ClusterOptions } from '../src/cluster.js';
import { RawClient, SIZES, testLogger } from './cluster-helpers.js';

const JOIN = 'join-token';
const TRUSTED = 'trusted-token';
let cluster: Cluster | null = null;
const raws: RawClient[] = [];
const counters: Record<string, number> = {};

afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await cluster?.close();
  cluster = null;
  for (const k of Object.keys(counters)) delete counters[k];
});

async function start(over: Partial<ClusterOptions> = {}): Promise<Cluster> {
  cluster = await startCluster({
    host: '127.0.0.1', port: 0, token: JOIN, trustedToken: TRUSTED, sizes: SIZES, chunk: 4, normalize: false, maxBatch: 24, logger: testLogger(),
    speculateAfterMs: null,
    status: { count: (name, by = 1) => void (counters[name] = (counters[name] ?? 0) + by), upsertWorker: () => {}, removeWorker: () => {} },
    ...over,
  });
  return cluster;
}

function raw(token: string): RawClient {
  const r = new RawClient(cluster!.url, token);
  raws.push(r);
  return r;
}

async function joinWith(token: string): Promise<RawClient> {
  const r = raw(token);
  await r.opened;
  r.hello(token);
  await r.next('welcome');
  return r;
}

describe('trusted workers and volunteers', () => {
  it('marks each connection trusted or not by its token, and keeps its remote address', async () => {
    const c = await start();
    await joinWith(TRUSTED);
    await joinWith(JOIN);
    const ws = c.membership.workers();
    expect(ws.map((w) => w.trusted)).toEqual([true, false]);
    expect(ws.every((w) => w.address === '127.0.0.1')).toBe(true);
    expect(new Set(ws.map((w) => w.id)).size).toBe(2);
  });

  it('rejects a Hello whose token is not the one of the upgrade (BAD_TOKEN)', async () => {
    await start();
    const a = raw(JOIN);
    await a.opened;
    a.hello(TRUSTED);
    expect((await a.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_TOKEN);
    const b = raw(TRUSTED);
    await b.opened;
    b.hello(JOIN);
    expect((await b.next('reject')).reject!.code).toBe(gradhub.ErrorCode.BAD_TOKEN);
  });

  it('refuses volunteer upgrades past their cap with 503 (counted) while a trusted worker still gets in', async () => {
    await start({ limits: { maxVolunteers: 2, maxTrusted: 1 } });
    await joinWith(JOIN);
    await joinWith(JOIN);
    await expect(raw(JOIN).opened).rejects.toMatchObject({ status: 503 });
    await joinWith(TRUSTED);
    await expect(raw(TRUSTED).opened).rejects.toMatchObject({ status: 503 });
    await expect(raw('nobody').opened).rejects.toMatchObject({ status: 401 });
    expect(counters['refused.volunteers_full']).toBe(1);
    expect(counters['refused.trusted_full']).toBe(1);
    expect(counters['refused.bad_token']).toBe(1);
  });

  it('caps ready volunteers and trusted workers apart at the Hello (Reject FULL)', async () => {
    const c = await start({ maxWorkers: 1, maxTrustedWorkers: 1 });
    await joinWith(JOIN);
    const late = raw(JOIN);
    await late.opened;
    late.hello(JOIN);
    expect((await late.next('reject')).reject!.code).toBe(gradhub.ErrorCode.FULL);
    await joinWith(TRUSTED);
    expect(c.membership.size).toBe(2);
  });
});
