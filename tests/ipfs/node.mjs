// A real IPFS node for the tests: js-ipfs (ipfs-core) behind its RPC API (ipfs-http-server),
// offline, on loopback. Usage: node tests/ipfs/node.mjs REPO_DIR PORT; prints "ready" when the
// API answers, and stops on SIGTERM.
if (typeof Promise.withResolvers !== 'function') {
  // js-ipfs 0.66's libp2p calls it; Node 20 does not have it (Node 22 does)
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const [repo, port] = process.argv.slice(2)
const { create } = await import('ipfs-core')
const { HttpApi } = await import('ipfs-http-server')

const ipfs = await create({
  repo,
  offline: true,
  silent: true,
  init: { emptyRepo: true },
  preload: { enabled: false },
  config: {
    Addresses: { Swarm: [], API: `/ip4/127.0.0.1/tcp/${port}`, Gateway: [], RPC: [], Delegates: [] },
    Bootstrap: [],
    Discovery: { MDNS: { Enabled: false }, webRTCStar: { Enabled: false } }
  }
})
const api = new HttpApi(ipfs)
await api.start()
console.log('ready')

const stop = async () => {
  await api.stop()
  await ipfs.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
