"""An application for the CLI tests (imported by `ember serve run/deploy` as a module)."""

import ember.serve as serve


@serve.deployment(num_cpus=0)
class Greeter:
    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting

    async def __call__(self, request):
        return self.greeting


app = Greeter.bind()


def build(args: dict):
    return Greeter.bind(args.get("greeting", "hi"))
