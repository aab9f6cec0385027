// Reads the routes out of fastify's `printRoutes()` tree: one place for every test that walks
// every route a server registers (docs, the role matrix, action-limited keys), so none of them
// keeps a hand-written list that can rot.

export interface TreeRoute {
  method: string;
  url: string;
}

/** Every method × URL in a printRoutes() tree (HEAD twins included). */
export function parseRouteTree(tree: string): TreeRoute[] {
  const routes: TreeRoute[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    stack.length = m[1]!.length / 4;
    stack.push(m[2]!);
    if (m[3]) for (const method of m[3].split(/,\s*/)) routes.push({ method, url: stack.join('') });
  }
  return routes;
}
