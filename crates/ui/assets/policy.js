// The purposes a person can consent to, worded as in the privacy notice
// (crates/users/src/policy.md, version 2026-12-01). Each is asked for on its own and is off
// until the person turns it on.

export const POLICY_VERSION = '2026-12-01';

export const PURPOSES = [
  {
    id: 'rewards',
    title: 'Rewards programme',
    text: 'Your card charges are used to compute reward points in the rewards programme.',
    note: 'The simulated card accepts charges only while this is on.',
  },
  {
    id: 'analytics',
    title: 'Anonymised analytics',
    text: 'Your spending may be used, anonymised and only in groups of at least five people, to understand spending per category and month.',
    note: '',
  },
  {
    id: 'profiling',
    title: 'Personal insights (profiling)',
    text: 'Your own spending is used to compute personalised insights shown only to you.',
    note: '',
  },
];

export const POLICY_SUMMARY =
  'You may give or withdraw each consent at any time; withdrawing is as easy as giving and ' +
  'takes effect for your very next request. You may see, download, correct, restrict or erase your data.';

export function purposeTitle(id) {
  return PURPOSES.find((p) => p.id === id)?.title ?? String(id);
}
