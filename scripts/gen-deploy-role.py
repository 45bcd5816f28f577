import ast, re, sys, yaml
def var(name): return name if name.startswith('deploy_') else f'deploy_{name}'
names = None
sys.path.insert(0, '.')
from plugins.module_utils import _deploy
src = open('plugins/modules/app_deploy.py').read()
doc = yaml.safe_load(ast.literal_eval(src.split('DOCUMENTATION = ')[1].split('\n"""')[0] + '\n"""'))
frag = open('plugins/doc_fragments/reverse_proxy.py').read()
frag_doc = yaml.safe_load(frag.split('DOCUMENTATION = r"""')[1].split('"""')[0])
docs = {**frag_doc['options'], **doc['options']}
options = {}
defaults = {}
def clean(d):
    d = dict(d)
    d.pop('aliases', None)
    return d
for name, spec in _deploy.DEPLOY_SPEC.items():
    entry = clean(docs[name])
    if 'suboptions' in entry:
        entry['options'] = {k: clean(v) for k, v in entry.pop('suboptions').items()}
        for v in entry['options'].values():
            v.pop('suboptions', None)
    entry.pop('required', None)
    if name in ('app', 'site'):
        entry['required'] = True
        entry.pop('default', None)
    entry = yaml.safe_load(re.sub(r'O\(([a-z_]+)(=[^)]*)?\)', lambda m: f'O({var(m.group(1))}{m.group(2) or ""})' if m.group(1) in _deploy.DEPLOY_SPEC else m.group(0), yaml.safe_dump(entry)))
    options[var(name)] = entry
    if 'default' in entry:
        defaults[var(name)] = entry['default']
spec = {'argument_specs': {'main': {
    'short_description': 'Blue-green deploy of one Docker app behind a reverse_proxy site, with a verified backup first and a rollback',
    'description': [
        'Runs M(lifeboat.ops.app_deploy) once with the O(deploy_*) variables (each is the module option of the same name without the prefix).',
        'Sets the fact C(deploy_history) to the run\'s history entry (also in C(STATE_DIR/APP/history/)); the playbook lifeboat.ops.deploy publishes it with set_stats as C(lifeboat_deploy_outcome).',
        'A rolled-back or refused deploy fails the host with the module\'s one line, after the fact is set.'],
    'author': 'lifeboat developers',
    'options': options}}}
open('roles/deploy/meta/argument_specs.yml', 'w').write('---\n# Generated from the app_deploy module\'s options (scripts/gen in tests/unit/test_deploy_role.py keeps it in step).\n' + yaml.safe_dump(spec, sort_keys=False, width=120))
lines = ['---', '# Defaults of the deploy role: each deploy_NAME is the option NAME of lifeboat.ops.app_deploy (see meta/argument_specs.yml).', '# Required: deploy_app, deploy_site, and deploy_image to deploy.']
for name, value in defaults.items():
    desc = options[name]['description']
    desc = desc if isinstance(desc, str) else desc[0]
    lines.append(f'# {desc.split(". ")[0].rstrip(".")}.')
    lines.append(yaml.safe_dump({name: value}, default_flow_style=True, width=200).strip().strip('{}') if False else f'{name}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(chr(10)+"...")}')
open('roles/deploy/defaults/main.yml', 'w').write('\n'.join(lines) + '\n')
task_args = []
for name, spec in _deploy.DEPLOY_SPEC.items():
    if var(name) in defaults or name in ('app', 'site'):
        task_args.append(f'    {name}: "{{{{ {var(name)} }}}}"')
    else:
        task_args.append(f'    {name}: "{{{{ {var(name)} | default(omit) }}}}"')
tasks = """---
# One deploy (or rollback) of one app: the whole run happens in the module's own process, which holds the app's lock.
# Every deploy_NAME variable is forwarded as the module's option NAME (meta/argument_specs.yml is generated from it).
- name: Deploy {{ deploy_app }} ({{ deploy_action }})
  lifeboat.ops.app_deploy:
""" + "\n".join(task_args) + """
  register: __deploy_result
  failed_when: false  # the history is kept as a fact first; the failure follows with the module's one line

- name: Keep the run's history entry
  ansible.builtin.set_fact:
    deploy_history: "{{ __deploy_result.history | default({'app': deploy_app, 'outcome': 'refused', 'reason': __deploy_result.msg | default('')}) }}"

- name: Say what the run did or would do
  ansible.builtin.debug:
    msg: "{{ __deploy_result.plan if __deploy_result.plan | default([]) else (deploy_history.outcome ~ ': ' ~ (deploy_history.release | default(''))) }}"

- name: Fail as the module did
  ansible.builtin.fail:
    msg: "{{ __deploy_result.msg }}"
  when: __deploy_result.failed | default(false)
"""
open('roles/deploy/tasks/main.yml', 'w').write(tasks)
