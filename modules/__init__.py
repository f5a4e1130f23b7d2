"""Code that apps name from their manifests (see connector.core.appcode); shipped as
connector/_modules. The shipped apps need none yet."""
