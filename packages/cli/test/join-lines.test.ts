import { describe, expect, it } from 'vitest';
import type { NetworkInterfaceInfo } from 'node:os';
import { joinLines, reachableHosts } from '../src/join-lines.js';

const nic = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '', mac: '', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;
const interfaces = {
  lo: [nic('127.0.0.1', 'IPv4', true), nic('::1', 'IPv6', true)],
  eth0: [nic('192.168.1.5', 'IPv4'), nic('fe80::1', 'IPv6'), nic('2001:db8::5', 'IPv6')],
  wlan0: [nic('10.0.0.3', 'IPv4')],
};

describe('reachableHosts', () => {
  it('lists the non-internal addresses for a coordinator listening everywhere', () => {
    expect(reachableHosts('0.0.0.0', interfaces)).toEqual(['192.168.1.5', '10.0.0.3']);
    expect(reachableHosts('::', interfaces)).toEqual(['192.168.1.5', '10.0.0.3', '[2001:db8::5]']);
  });
  it('keeps a given address, and falls back to loopback on a machine without a network', () => {
    expect(reachableHosts('192.168.1.5', interfaces)).toEqual(['192.168.1.5']);
    expect(reachableHosts('::1', interfaces)).toEqual(['[::1]']);
    expect(reachableHosts('0.0.0.0', { lo: interfaces.lo })).toEqual(['127.0.0.1']);
  });
});

describe('joinLines', () => {
  it('prints one npx gradhub worker line per address, and says where it runs', () => {
    const lines = joinLines({ listenHost: '0.0.0.0', port: 8080, tls: false, token: 'T', hosts: ['192.168.1.5', '10.0.0.3'] });
    expect(lines).toContain('    npx gradhub worker --url ws://192.168.1.5:8080 --token T');
    expect(lines).toContain('    npx gradhub worker --url ws://10.0.0.3:8080 --token T');
    expect(lines.join('\n')).toMatch(/clone of gradhub after `npm ci && npm run build`/);
    expect(lines).toContain('  dashboard:  http://192.168.1.5:8080/dashboard');
  });
});
