// The /admin page: log in with the admin token (kept in sessionStorage only), then list, add,
// edit and delete mappings through the admin API. Plain browser JavaScript, no build step.
'use strict';

const TOKEN_KEY = 'ai-gateway-admin-token';
// The page may sit under an admin prefix: the API is a sibling of /admin.
const API = location.pathname.replace(/\/admin\/?$/, '') + '/api/mappings';
const $ = (id) => document.getElementById(id);

async function call(method, path, body) {
  const res = await fetch(API + path, {
    method,
    headers: { authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(data.error || res.status + ' ' + res.statusText);
    error.status = res.status;
    throw error;
  }
  return data;
}

function showApp(loggedIn) {
  $('login').hidden = loggedIn;
  $('app').hidden = !loggedIn;
}

async function refresh() {
  $('list-error').textContent = '';
  try {
    const { mappings } = await call('GET', '');
    render(mappings);
    showApp(true);
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      showApp(false);
      $('login-error').textContent = err.status === 401 ? 'That token is not right.' : err.message;
    } else {
      $('list-error').textContent = err.message;
    }
  }
}

function render(mappings) {
  const rows = $('rows');
  rows.replaceChildren();
  for (const mapping of mappings) {
    const row = $('row').content.firstElementChild.cloneNode(true);
    row.dataset.name = mapping.name;
    const q = (selector) => row.querySelector(selector);
    q('.prefix').textContent = mapping.prefix;
    q('.target').textContent = mapping.target;
    q('.nothink').textContent = mapping.nothink ? 'on' : '';
    const editing = (on) => {
      for (const s of ['.target', '.nothink', '.edit', '.delete']) q(s).hidden = on;
      for (const s of ['.edit-target', '.edit-nothink', '.save', '.cancel']) q(s).hidden = !on;
      q('.row-error').textContent = '';
    };
    q('.edit').addEventListener('click', () => {
      q('.edit-target').value = mapping.target;
      q('.edit-nothink').checked = Boolean(mapping.nothink);
      editing(true);
      q('.edit-target').focus();
    });
    q('.cancel').addEventListener('click', () => editing(false));
    q('.save').addEventListener('click', async () => {
      try {
        await call('PUT', '/' + encodeURIComponent(mapping.name), { target: q('.edit-target').value.trim(), nothink: q('.edit-nothink').checked });
        await refresh();
      } catch (err) {
        q('.row-error').textContent = err.message;
      }
    });
    q('.delete').addEventListener('click', async () => {
      if (!confirm('Delete the mapping ' + mapping.prefix + ' → ' + mapping.target + '?')) return;
      try {
        await call('DELETE', '/' + encodeURIComponent(mapping.name));
        await refresh();
      } catch (err) {
        q('.row-error').textContent = err.message;
      }
    });
    rows.append(row);
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  sessionStorage.setItem(TOKEN_KEY, $('token').value);
  $('token').value = '';
  await refresh();
});

$('add-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('add-error').textContent = '';
  let prefix = $('add-prefix').value.trim();
  if (prefix && !prefix.startsWith('/')) prefix = '/' + prefix;
  try {
    await call('POST', '', { prefix, target: $('add-target').value.trim(), nothink: $('add-nothink').checked });
    $('add-form').reset();
    await refresh();
  } catch (err) {
    $('add-error').textContent = err.message;
  }
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $('rows').replaceChildren();
  showApp(false);
});

if (sessionStorage.getItem(TOKEN_KEY)) refresh();
else showApp(false);
