// Entry point: mounts the shell. Styles are bundled beside it (main-<hash>.css); nothing inline.
import { render } from 'preact';
import { App } from './app';
import './styles.css';

render(<App />, document.getElementById('app')!);
