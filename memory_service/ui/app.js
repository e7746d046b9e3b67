// The explorer's entry point: signing in and out, and the routes (#/section?params).
// Routes carry ids and filters only, never the key.

import { api, ApiError, session } from './api.js';
import { blocksView } from './blocks.js';
import { clear } from './dom.js';
import { kvValueView, kvView } from './kv.js';
import { memoriesView, memoryView } from './memories.js';
import { overviewView } from './overview.js';
import { fail, quiet, say } from './shell.js';

const $ = (id) => document.getElementById(id);

const routes = {
  overview: overviewView,
  memories: memoriesView,
  memory: memoryView,
  blocks: blocksView,
  kv: kvView,
  'kv-value': kvValueView,
};

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?', 2);
  return { name: path || 'overview', params: new URLSearchParams(query || '') };
}

let rendering = 0;

async function render() {
  if (!session.key) return showSignIn();
  const { name, params } = parseHash();
  const view = routes[name] || overviewView;
  const section = name === 'memory' ? 'memories' : name === 'kv-value' ? 'kv' : name;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const target = clear($('view'));
  const token = ++rendering;
  $('alert').hidden = true;
  try {
    await view(target, params, () => token === rendering);
  } catch (error) {
    // (A refused key has signed the tab out already: nothing more to say.)
    if (token === rendering && session.key) fail(error);
  }
  // For measurements (bench/ui_render.py): when this view's first render was complete.
  if (token === rendering) performance.mark('view-rendered', { detail: name });
  // Move focus to the new view's heading so keyboard and screen-reader users start there.
  const heading = target.querySelector('h2');
  if (heading && token === rendering && !target.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

function showSignIn(message) {
  rendering += 1; // whatever a view was still loading is dropped, never shown after this
  $('nav').hidden = true;
  $('who').hidden = true;
  clear($('view'));
  $('sign-in').hidden = false;
  const error = $('sign-in-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('api-key').focus();
}

function showSignedIn(workspace) {
  $('sign-in').hidden = true;
  $('workspace-name').textContent = workspace;
  $('nav').hidden = false;
  $('who').hidden = false;
  document.title = `${workspace} · memory-service explorer`;
}

function signOut(message) {
  session.clear();
  quiet();
  document.title = 'memory-service explorer';
  $('workspace-name').textContent = '';
  showSignIn(message);
  if (!message) say('Signed out. The key is forgotten by this tab.');
}

async function signIn(event) {
  event.preventDefault();
  const input = $('api-key');
  const key = input.value.trim();
  if (!key) return;
  try {
    const usage = await api('/api/usage', { key });
    input.value = '';
    session.set(key);
    showSignedIn(usage.workspace);
    say(`Signed in to workspace ${usage.workspace}.`);
    if (!location.hash || location.hash === '#') location.hash = '#/overview';
    else await render();
  } catch (error) {
    const text =
      error instanceof ApiError && error.status === 401
        ? 'That key was not accepted (wrong, revoked, or its workspace was deleted).'
        : error.message;
    showSignIn(text);
  }
}

async function start() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut());
  session.onUnauthorized(() => signOut('Your key is no longer accepted. Sign in again.'));
  window.addEventListener('hashchange', render);
  if (!session.key) return showSignIn();
  try {
    const usage = await api('/api/usage');
    showSignedIn(usage.workspace);
    await render();
  } catch (error) {
    if (session.key) fail(error);
  }
}

start();
